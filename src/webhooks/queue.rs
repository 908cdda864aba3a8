//! The bounded queues of events waiting for delivery: one FIFO per ordering key (a call), with a
//! cap per key and in total. An event stays at the front of its queue, counted, while it is being
//! delivered and retried; only its outcome removes it. So memory is bounded by the caps, and a
//! key has a worker exactly while its queue is non-empty. No I/O, no clock, no locks: the
//! dispatcher holds it in a mutex.

use super::allow_list::CallbackUri;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// One event ready to be sent: its body is fixed when it is published.
#[derive(Debug)]
pub struct Queued {
    /// Unique over the dispatcher's life; tells a finished delivery which entry to remove.
    pub seq: u64,
    pub to: CallbackUri,
    pub ordering_key: Arc<str>,
    pub event_id: String,
    pub event_name: &'static str,
    pub body: Bytes,
    pub published: Instant,
}

/// What `push` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued behind others of its key; that key's worker will reach it.
    Queued,
    /// Queued on an idle key: start a worker for it.
    StartWorker,
    /// Refused: the key already holds its cap.
    KeyFull,
    /// Refused: all keys together hold the total cap.
    TotalFull,
    /// Refused: the dispatcher is shut down.
    Closed,
}

/// Every queue.
#[derive(Debug)]
pub struct Queues {
    by_key: HashMap<Arc<str>, VecDeque<Arc<Queued>>>,
    total: usize,
    max_per_key: usize,
    max_total: usize,
    closed: bool,
    next_seq: u64,
}

impl Queues {
    pub fn new(max_per_key: usize, max_total: usize) -> Self {
        Self { by_key: HashMap::new(), total: 0, max_per_key, max_total, closed: false, next_seq: 0 }
    }

    /// A sequence number for the next event.
    pub fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Queue an event at the back of its key.
    pub fn push(&mut self, event: Queued) -> Pushed {
        if self.closed {
            return Pushed::Closed;
        }
        if self.total >= self.max_total {
            return Pushed::TotalFull;
        }
        let queue = self.by_key.entry(event.ordering_key.clone()).or_default();
        if queue.len() >= self.max_per_key {
            return Pushed::KeyFull;
        }
        let idle = queue.is_empty();
        queue.push_back(Arc::new(event));
        self.total += 1;
        if idle { Pushed::StartWorker } else { Pushed::Queued }
    }

    /// The event a key's worker should deliver next, or `None` when the key is done (its entry
    /// is then gone and its worker must end; the next `push` starts a new one).
    pub fn front(&mut self, key: &str) -> Option<Arc<Queued>> {
        match self.by_key.get(key).and_then(|q| q.front()) {
            Some(event) => Some(event.clone()),
            None => {
                self.by_key.remove(key);
                None
            }
        }
    }

    /// The front event of `key` reached an outcome: remove it. `false` when it was no longer
    /// there (shutdown cleared the queues meanwhile).
    pub fn finish(&mut self, key: &str, seq: u64) -> bool {
        let Some(queue) = self.by_key.get_mut(key) else { return false };
        if queue.front().is_none_or(|e| e.seq != seq) {
            return false;
        }
        queue.pop_front();
        self.total -= 1;
        true
    }

    /// Events queued (including those being delivered).
    pub fn total(&self) -> usize {
        self.total
    }

    /// Refuse everything from now on and drop what is queued; returns how many were dropped, or
    /// `None` when already closed.
    pub fn close(&mut self) -> Option<usize> {
        if std::mem::replace(&mut self.closed, true) {
            return None;
        }
        let dropped = self.total;
        self.by_key.clear();
        self.total = 0;
        Some(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(q: &mut Queues, key: &str) -> Queued {
        let uri = super::super::allow_list::validate(
            &[super::super::allow_list::HostPattern::parse("localhost").expect("pattern")],
            "http://localhost/cb",
        )
        .expect("valid");
        Queued {
            seq: q.next_seq(),
            to: uri,
            ordering_key: Arc::from(key),
            event_id: String::new(),
            event_name: "CallConnected",
            body: Bytes::new(),
            published: Instant::now(),
        }
    }

    #[test]
    fn fifo_per_key_with_one_worker_start() {
        let mut q = Queues::new(10, 100);
        let a1 = event(&mut q, "a");
        let (s1, s2) = (a1.seq, a1.seq + 1);
        assert_eq!(q.push(a1), Pushed::StartWorker);
        let a2 = event(&mut q, "a");
        assert_eq!(q.push(a2), Pushed::Queued);
        let b1 = event(&mut q, "b");
        assert_eq!(q.push(b1), Pushed::StartWorker);
        assert_eq!(q.front("a").map(|e| e.seq), Some(s1));
        assert_eq!(q.front("a").map(|e| e.seq), Some(s1), "front stays until finished");
        assert!(!q.finish("a", s2), "only the front can finish");
        assert!(q.finish("a", s1));
        assert_eq!(q.front("a").map(|e| e.seq), Some(s2));
        assert!(q.finish("a", s2));
        assert_eq!(q.total(), 1);
        assert!(q.front("a").is_none());
        let a3 = event(&mut q, "a");
        assert_eq!(q.push(a3), Pushed::StartWorker, "an idle key gets a new worker");
    }

    #[test]
    fn caps_per_key_and_total_count_the_event_in_flight() {
        let mut q = Queues::new(2, 3);
        for expected in [Pushed::StartWorker, Pushed::Queued, Pushed::KeyFull] {
            let e = event(&mut q, "a");
            assert_eq!(q.push(e), expected);
        }
        let _in_flight = q.front("a");
        let e = event(&mut q, "a");
        assert_eq!(q.push(e), Pushed::KeyFull, "the event being delivered still counts");
        let e = event(&mut q, "b");
        assert_eq!(q.push(e), Pushed::StartWorker);
        let e = event(&mut q, "c");
        assert_eq!(q.push(e), Pushed::TotalFull);
        assert_eq!(q.total(), 3);
    }

    #[test]
    fn close_drops_and_counts_once_then_refuses() {
        let mut q = Queues::new(5, 5);
        for key in ["a", "a", "b"] {
            let e = event(&mut q, key);
            q.push(e);
        }
        let front = q.front("a").expect("front");
        assert_eq!(q.close(), Some(3));
        assert_eq!(q.close(), None);
        assert!(!q.finish("a", front.seq));
        let e = event(&mut q, "a");
        assert_eq!(q.push(e), Pushed::Closed);
        assert_eq!(q.total(), 0);
    }
}
