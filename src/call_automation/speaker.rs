//! The leg's voice: the queue of `play` and `sendDtmfTones` operations of one call connection and
//! the paced RTP of the one that is under way, on the leg's one audio stream (so tones and
//! prompts never interleave and the stream's sequence numbers and timestamps run on). Sans-IO: the leg's task publishes the audio track, awaits the
//! loading of the job at the head of the queue, calls [`Speaker::poll`] at the instants it asks
//! for and sends the packets; every change reports the ACS events it causes.
//!
//! Plays run one after the other in request order (ACS queues non-interrupting plays); an
//! interrupting play or `cancelAllMediaOperations` cancels the one playing and those queued.

use super::audio::dtmf::{TONE_PERIOD, Tone, tone_packets};
use super::audio::{Player, PlayerOutput, Prompt};
use super::media::MediaError;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub use crate::sfu::packet::{OPUS_PT, TELEPHONE_EVENT_PT};

/// The prompts of a play, or why they cannot be played.
pub type Loaded = Result<Vec<Arc<Prompt>>, MediaError>;

/// One media job's place in its connection's count of queued and running jobs
/// (`MAX_QUEUED_MEDIA`): given back when the job is dropped, however it ends - completed,
/// canceled, failed, interrupted, or never queued at all.
pub struct MediaSlot(Option<Arc<AtomicUsize>>);

impl MediaSlot {
    /// Take a place in `count` if fewer than `max` are taken.
    pub fn reserve(count: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Self(Some(count.clone())))
    }

    /// A slot counted nowhere (tests).
    pub fn uncounted() -> Self {
        Self(None)
    }
}

impl Drop for MediaSlot {
    fn drop(&mut self) {
        if let Some(count) = &self.0 {
            count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// One `play` request.
pub struct PlayJob {
    /// Its sources, being read and decoded (`spawn_blocking`) while earlier jobs play.
    pub loading: oneshot::Receiver<Loaded>,
    pub looped: bool,
    pub operation_context: Option<String>,
    pub slot: MediaSlot,
}

/// What the speaker is asked to say.
pub enum Job {
    Play(PlayJob),
    /// `sendDtmfTones`: RFC 4733 events on the stream.
    Tones {
        tones: Vec<Tone>,
        operation_context: Option<String>,
        slot: MediaSlot,
    },
}

impl Job {
    fn context(self) -> Option<String> {
        match self {
            Job::Play(j) => j.operation_context,
            Job::Tones { operation_context, .. } => operation_context,
        }
    }
}

/// What happened to a job (`id` as given to [`Speaker::enqueue`]), for the app.
#[derive(Debug)]
pub struct PlayEvent {
    pub id: u64,
    pub operation_context: Option<String>,
    pub kind: PlayEventKind,
    /// Whether the job was tones (`SendDtmfTones*` events) rather than a play.
    pub tones: bool,
}

#[derive(Debug)]
pub enum PlayEventKind {
    Started,
    Completed,
    Failed(MediaError),
    Canceled,
}

/// Which RTP stream (one published track of the leg) a job is heard on: the main one, to
/// everyone, or one per audience of a targeted play.
pub type StreamId = u32;
/// The stream every speaker starts with (the leg's track to everyone).
pub const MAIN_STREAM: StreamId = 0;

/// Where an RTP stream's numbering stands: each stream's sequence numbers and timestamps run on
/// across the jobs heard on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
}

/// Tones under way: packets with their offsets from `start`.
struct Sending {
    start: Instant,
    packets: VecDeque<(Duration, Bytes)>,
}

enum Voice {
    Player(Player),
    Tones(Sending),
}

struct Playing {
    id: u64,
    stream: StreamId,
    voice: Voice,
    rest: VecDeque<Arc<Prompt>>,
    looped: bool,
    operation_context: Option<String>,
    /// Held until the job ends.
    _slot: MediaSlot,
}

/// The play queue and RTP stream state of one leg.
pub struct Speaker {
    streams: HashMap<StreamId, Stream>,
    queue: VecDeque<(u64, StreamId, Job)>,
    playing: Option<Playing>,
}

fn event(id: u64, operation_context: Option<String>, kind: PlayEventKind, tones: bool) -> PlayEvent {
    PlayEvent { id, operation_context, kind, tones }
}

impl Speaker {
    pub fn new(ssrc: u32, first_seq: u16, first_timestamp: u32) -> Self {
        let main = Stream { ssrc, seq: first_seq, timestamp: first_timestamp };
        Self { streams: HashMap::from([(MAIN_STREAM, main)]), queue: VecDeque::new(), playing: None }
    }

    /// Start numbering another stream (a track to some participants only).
    pub fn add_stream(&mut self, id: StreamId, stream: Stream) {
        self.streams.insert(id, stream);
    }

    /// Forget a stream whose track is gone (no job on it may be queued or playing).
    pub fn remove_stream(&mut self, id: StreamId) {
        if id != MAIN_STREAM {
            self.streams.remove(&id);
        }
    }

    /// Where stream `id` stands.
    pub fn stream(&self, id: StreamId) -> Option<Stream> {
        self.streams.get(&id).copied()
    }

    /// Queue a job, heard on `stream`; an interrupting one first cancels everything playing or
    /// queued.
    pub fn enqueue(&mut self, id: u64, stream: StreamId, job: Job, interrupt: bool) -> Vec<PlayEvent> {
        let events = if interrupt { self.cancel_all() } else { Vec::new() };
        self.queue.push_back((id, stream, job));
        events
    }

    /// The numbering of `stream` (a stream removed under a job restarts at zero: never the case
    /// while the leg keeps a track per queued job).
    fn numbering(&self, stream: StreamId) -> Stream {
        self.streams.get(&stream).copied().unwrap_or(Stream { ssrc: 0, seq: 0, timestamp: 0 })
    }

    /// A stream's numbering runs on from where a job stopped.
    fn run_on(&mut self, stream: StreamId, seq: u16, timestamp: u32) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.seq = seq;
            s.timestamp = timestamp;
        }
    }

    /// `cancelAllMediaOperations`: stop the job under way and drop the queue.
    pub fn cancel_all(&mut self) -> Vec<PlayEvent> {
        let mut events = Vec::new();
        if let Some(p) = self.playing.take() {
            let tones = matches!(p.voice, Voice::Tones(_));
            if let Voice::Player(player) = &p.voice {
                self.run_on(p.stream, player.next_seq(), player.next_timestamp());
            }
            events.push(event(p.id, p.operation_context, PlayEventKind::Canceled, tones));
        }
        events.extend(self.queue.drain(..).map(|(id, _, j)| {
            let tones = matches!(j, Job::Tones { .. });
            event(id, j.context(), PlayEventKind::Canceled, tones)
        }));
        events
    }

    /// Drop job `id` (under way or queued) without an event: a recognize's prompt that a tone
    /// interrupted. Whether it was there.
    pub fn drop_job(&mut self, id: u64) -> bool {
        if self.playing.as_ref().is_some_and(|p| p.id == id) {
            if let Some(Playing { voice: Voice::Player(player), stream, .. }) = self.playing.take() {
                self.run_on(stream, player.next_seq(), player.next_timestamp());
            }
            return true;
        }
        let before = self.queue.len();
        self.queue.retain(|(job, _, _)| *job != id);
        self.queue.len() != before
    }

    /// Whether something is queued or playing (the leg publishes its track before the first).
    pub fn busy(&self) -> bool {
        self.playing.is_some() || !self.queue.is_empty()
    }

    /// The loading the leg waits for: the head of the queue, when nothing plays.
    pub fn loading(&mut self) -> Option<&mut oneshot::Receiver<Loaded>> {
        if self.playing.is_some() {
            return None;
        }
        match self.queue.front_mut() {
            Some((_, _, Job::Play(j))) => Some(&mut j.loading),
            _ => None,
        }
    }

    /// Whether the head of the queue is tones, ready to start (nothing under way).
    pub fn tones_ready(&self) -> bool {
        self.playing.is_none() && matches!(self.queue.front(), Some((_, _, Job::Tones { .. })))
    }

    /// Start the tones at the head of the queue at `now` (a no-op unless [`Self::tones_ready`]).
    pub fn start_tones(&mut self, now: Instant) {
        if !self.tones_ready() {
            return;
        }
        let Some((id, stream, Job::Tones { tones, operation_context, slot })) = self.queue.pop_front() else {
            return;
        };
        let at = self.numbering(stream);
        let packets = tone_packets(&tones, at.ssrc, TELEPHONE_EVENT_PT, at.seq, at.timestamp, 48_000);
        // The stream's clock runs on by the tones' length.
        let length = TONE_PERIOD * u32::try_from(tones.len()).unwrap_or(u32::MAX);
        let samples = u32::try_from(length.as_millis() * 48).unwrap_or(u32::MAX);
        self.run_on(
            stream,
            at.seq.wrapping_add(u16::try_from(packets.len()).unwrap_or(u16::MAX)),
            at.timestamp.wrapping_add(samples),
        );
        let sending = Sending { start: now, packets: packets.into() };
        self.playing = Some(Playing {
            id,
            stream,
            voice: Voice::Tones(sending),
            rest: VecDeque::new(),
            looped: false,
            operation_context,
            _slot: slot,
        });
    }

    /// The head of the queue has loaded (or failed to).
    pub fn loaded(&mut self, result: Loaded) -> Vec<PlayEvent> {
        let Some((id, stream, job)) = self.queue.pop_front() else { return Vec::new() };
        let job = match job {
            Job::Play(job) => job,
            tones @ Job::Tones { .. } => {
                // Tones load nothing: not the job this result is for.
                self.queue.push_front((id, stream, tones));
                return Vec::new();
            }
        };
        match result {
            Err(e) => vec![event(id, job.operation_context, PlayEventKind::Failed(e), false)],
            Ok(prompts) => {
                let mut rest: VecDeque<_> = prompts.into();
                let Some(first) = rest.pop_front() else {
                    return vec![event(id, job.operation_context, PlayEventKind::Completed, false)];
                };
                let single_loop = job.looped && rest.is_empty();
                let at = self.numbering(stream);
                let player = Player::new(first, single_loop, at.ssrc, OPUS_PT, at.seq, at.timestamp);
                let started = event(id, job.operation_context.clone(), PlayEventKind::Started, false);
                self.playing = Some(Playing {
                    id,
                    stream,
                    voice: Voice::Player(player),
                    rest,
                    looped: job.looped,
                    operation_context: job.operation_context,
                    _slot: job.slot,
                });
                vec![started]
            }
        }
    }

    /// Packets due at `now` go to `out`, each with the stream it is for; returns when to poll
    /// next (`None`: nothing under way) and the events of jobs that finished.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<(StreamId, Bytes)>) -> (Option<Instant>, Vec<PlayEvent>) {
        let mut events = Vec::new();
        loop {
            let Some(p) = self.playing.as_mut() else { return (None, events) };
            let stream = p.stream;
            let player = match &mut p.voice {
                Voice::Tones(sending) => {
                    while let Some((offset, _)) = sending.packets.front() {
                        let due = sending.start.checked_add(*offset).unwrap_or(now);
                        if due > now {
                            return (Some(due), events);
                        }
                        if let Some((_, packet)) = sending.packets.pop_front() {
                            out.push((stream, packet));
                        }
                    }
                    let done = self.playing.take().map(|p| (p.id, p.operation_context));
                    if let Some((id, context)) = done {
                        events.push(event(id, context, PlayEventKind::Completed, true));
                    }
                    continue;
                }
                Voice::Player(player) => player,
            };
            match player.poll(now) {
                PlayerOutput::Packet(packet) => out.push((stream, packet)),
                PlayerOutput::Wait(at) => return (Some(at), events),
                PlayerOutput::Done => {
                    let (seq, ts, due) = (player.next_seq(), player.next_timestamp(), player.next_due());
                    let ssrc = self.numbering(stream).ssrc;
                    if let Some(s) = self.streams.get_mut(&stream) {
                        s.seq = seq;
                        s.timestamp = ts;
                    }
                    let p = self.playing.as_mut().expect("the job that just finished a source is still playing");
                    // The next source of the same play, or (a looped play of several sources)
                    // the first again.
                    match p.rest.pop_front() {
                        Some(prompt) => {
                            if p.looped {
                                p.rest.push_back(prompt.clone());
                            }
                            let player = Player::new(prompt, false, ssrc, OPUS_PT, seq, ts);
                            p.voice = Voice::Player(match due {
                                Some(due) => player.starting_at(due),
                                None => player,
                            });
                        }
                        None => {
                            let done = self.playing.take().map(|p| (p.id, p.operation_context));
                            if let Some((id, context)) = done {
                                events.push(event(id, context, PlayEventKind::Completed, false));
                            }
                        }
                    }
                }
            }
        }
    }

    pub fn playing(&self) -> bool {
        self.playing.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn job(ctx: &str, looped: bool) -> (Job, oneshot::Sender<Loaded>) {
        let (tx, rx) = oneshot::channel();
        (
            Job::Play(PlayJob {
                loading: rx,
                looped,
                operation_context: Some(ctx.into()),
                slot: MediaSlot::uncounted(),
            }),
            tx,
        )
    }

    fn prompt(n: usize) -> Arc<Prompt> {
        Arc::new(Prompt { packets: vec![Bytes::from_static(&[1, 2, 3]); n] })
    }

    fn names(events: &[PlayEvent]) -> Vec<String> {
        events.iter().map(|e| format!("{:?}", e.kind).split('(').next().unwrap_or_default().to_owned()).collect()
    }

    #[test]
    fn plays_in_order_with_events_and_a_continuous_stream() {
        let mut s = Speaker::new(7, 100, 1000);
        let (a, _ta) = job("a", false);
        let (b, _tb) = job("b", false);
        assert!(s.enqueue(1, MAIN_STREAM, a, false).is_empty());
        assert!(s.enqueue(2, MAIN_STREAM, b, false).is_empty());
        assert!(s.loading().is_some());
        assert_eq!(names(&s.loaded(Ok(vec![prompt(2), prompt(1)]))), ["Started"]);
        assert!(s.loading().is_none(), "the next job waits while one plays");
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut now = t0;
        let mut events = Vec::new();
        let mut sent_at = Vec::new();
        loop {
            let before = out.len();
            let (at, ev) = s.poll(now, &mut out);
            sent_at.extend(std::iter::repeat_n(now - t0, out.len() - before));
            events.extend(ev);
            match at {
                Some(at) => now = at,
                None => break,
            }
        }
        assert_eq!(names(&events), ["Completed"]);
        assert_eq!(out.len(), 3, "both sources of the play");
        assert_eq!(
            sent_at,
            [Duration::ZERO, Duration::from_millis(20), Duration::from_millis(40)],
            "paced across sources"
        );
        let seqs: Vec<u16> = out.iter().map(|(_, p)| crate::rtp::RtpHeader::parse(p).expect("rtp").seq).collect();
        assert_eq!(seqs, [100, 101, 102]);
        let main = s.stream(MAIN_STREAM).expect("the main stream");
        assert_eq!((main.seq, main.timestamp), (103, 1000 + 3 * 960));
        assert!(s.loading().is_some(), "then the next job loads");
        let failed = s.loaded(Err(MediaError::NotFound));
        assert!(matches!(
            failed.as_slice(),
            [PlayEvent { id: 2, kind: PlayEventKind::Failed(MediaError::NotFound), .. }]
        ));
        assert!(!s.busy());

        // Tones continue the stream after the play, as telephone-events, then complete.
        s.enqueue(
            3,
            MAIN_STREAM,
            Job::Tones { tones: vec![Tone::One, Tone::Pound], operation_context: None, slot: MediaSlot::uncounted() },
            false,
        );
        assert!(s.loading().is_none() && s.tones_ready());
        s.start_tones(now);
        let mut tones = Vec::new();
        let mut events = Vec::new();
        loop {
            let (at, ev) = s.poll(now, &mut tones);
            events.extend(ev);
            match at {
                Some(at) => now = at,
                None => break,
            }
        }
        assert_eq!(names(&events), ["Completed"]);
        assert!(events[0].tones);
        assert_eq!(tones.len(), 2 * 8, "5 event packets and 3 end packets per tone");
        let first = crate::rtp::RtpHeader::parse(&tones[0].1).expect("rtp");
        assert_eq!((first.seq, first.payload_type, first.timestamp), (103, TELEPHONE_EVENT_PT, 1000 + 3 * 960));
    }

    /// Jobs for different audiences are heard on their own streams, one after the other in
    /// request order; each stream's numbering runs on by itself.
    #[test]
    fn streams_to_audiences_number_their_own_packets() {
        let mut s = Speaker::new(7, 100, 1000);
        s.add_stream(5, Stream { ssrc: 9, seq: 60_000, timestamp: 7 });
        let (a, _ta) = job("to everyone", false);
        let (b, _tb) = job("to one", false);
        let (c, _tc) = job("to everyone again", false);
        s.enqueue(1, MAIN_STREAM, a, false);
        s.enqueue(2, 5, b, false);
        s.enqueue(3, MAIN_STREAM, c, false);
        let mut out = Vec::new();
        let mut now = Instant::now();
        for _ in 0..3 {
            s.loaded(Ok(vec![prompt(2)]));
            loop {
                let (at, _) = s.poll(now, &mut out);
                match at {
                    Some(at) => now = at,
                    None => break,
                }
            }
        }
        let heard: Vec<(StreamId, u32, u16)> = out
            .iter()
            .map(|(stream, p)| {
                let h = crate::rtp::RtpHeader::parse(p).expect("rtp");
                (*stream, h.ssrc, h.seq)
            })
            .collect();
        assert_eq!(heard, [(0, 7, 100), (0, 7, 101), (5, 9, 60_000), (5, 9, 60_001), (0, 7, 102), (0, 7, 103)]);
        assert_eq!(s.stream(5).map(|st| st.seq), Some(60_002));
        s.remove_stream(5);
        s.remove_stream(MAIN_STREAM);
        assert!(s.stream(5).is_none() && s.stream(MAIN_STREAM).is_some(), "the main stream stays");
    }

    #[test]
    fn interrupt_and_cancel_report_every_play_they_drop() {
        let mut s = Speaker::new(7, 0, 0);
        let (a, _ta) = job("a", true);
        s.enqueue(1, MAIN_STREAM, a, false);
        s.loaded(Ok(vec![prompt(1)]));
        let (b, _tb) = job("b", false);
        s.enqueue(2, MAIN_STREAM, b, false);
        let (c, _tc) = job("c", false);
        let events = s.enqueue(3, MAIN_STREAM, c, true);
        assert_eq!(names(&events), ["Canceled", "Canceled"]);
        assert!(s.busy());
        assert_eq!(names(&s.cancel_all()), ["Canceled"]);
        assert!(!s.busy());
    }

    #[test]
    fn media_slots_come_back_however_jobs_end() {
        let count = Arc::new(AtomicUsize::new(0));
        let slot = || MediaSlot::reserve(&count, 3).expect("below the bound");
        let mut s = Speaker::new(1, 0, 0);
        let (tx_a, rx_a) = oneshot::channel();
        let play = |rx, slot| Job::Play(PlayJob { loading: rx, looped: false, operation_context: None, slot });
        s.enqueue(1, MAIN_STREAM, play(rx_a, slot()), false);
        s.enqueue(2, MAIN_STREAM, Job::Tones { tones: vec![Tone::One], operation_context: None, slot: slot() }, false);
        let (_tx_c, rx_c) = oneshot::channel();
        s.enqueue(3, MAIN_STREAM, play(rx_c, slot()), false);
        assert!(MediaSlot::reserve(&count, 3).is_none(), "the bound holds");
        // A failed load ends the first job.
        drop(tx_a);
        s.loaded(Err(MediaError::Read("gone".into())));
        assert_eq!(count.load(Ordering::Acquire), 2);
        // Tones play to their end.
        let t0 = Instant::now();
        s.start_tones(t0);
        let mut out = Vec::new();
        s.poll(t0 + Duration::from_secs(5), &mut out);
        assert_eq!(count.load(Ordering::Acquire), 1);
        // Cancel drops what is queued.
        s.cancel_all();
        assert_eq!(count.load(Ordering::Acquire), 0);
        // A job never queued gives its place back too.
        drop(slot());
        assert_eq!(count.load(Ordering::Acquire), 0);
    }
}
