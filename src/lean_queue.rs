//! `lean_queue`: a bounded queue with many senders and one async receiver that holds no buffer
//! while it is empty.
//!
//! Each connected session has three such queues (its worker inbox, its device notices, its room
//! events) and spends nearly all its life with all three empty. tokio's `mpsc` allocates its
//! cache-padded header and a first block of 32 slots when the channel is made: 800 to 1,824 bytes
//! per queue, 3.9 KB per idle participant, an eighth of what one costs. This queue is one small
//! allocation (about 100 bytes) until something is sent, and gives its buffer back each time the
//! receiver empties it. Traffic on these queues is control-plane (a join, a participant event, an
//! incoming call), so a buffer allocated per burst costs nothing that matters; media never passes
//! through them.
//!
//! The API is the part of `tokio::sync::mpsc` the sessions use: `try_send` with tokio's
//! `TrySendError` (full or closed), and a cancel-safe `recv` for `select!`.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
pub use tokio::sync::mpsc::error::{TryRecvError, TrySendError};

/// A queue of at most `capacity` items.
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State { items: VecDeque::new(), capacity, senders: 1, waker: None, receiver_gone: false }),
    });
    (Sender { shared: shared.clone() }, Receiver { shared })
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    items: VecDeque<T>,
    capacity: usize,
    senders: usize,
    /// The receiver waiting in `recv`.
    waker: Option<Waker>,
    receiver_gone: bool,
}

impl<T> Shared<T> {
    /// Every critical section leaves the state whole (no code in it can panic except an
    /// allocation failure, which aborts), so a poisoned lock still guards a good state.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending half; clone it for more senders.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queue `value` unless the queue is full or its receiver is gone.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let waker = {
            let mut state = self.shared.lock();
            if state.receiver_gone {
                return Err(TrySendError::Closed(value));
            }
            if state.items.len() >= state.capacity {
                return Err(TrySendError::Full(value));
            }
            state.items.push_back(value);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().receiver_gone
    }

    /// Whether both are the same queue.
    pub fn same_channel(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender { shared: self.shared.clone() }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.lock();
            state.senders -= 1;
            if state.senders == 0 { state.waker.take() } else { None }
        };
        // The last sender gone: a waiting receiver learns the queue has ended.
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("lean_queue::Sender").finish_non_exhaustive()
    }
}

/// The receiving half.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next item; `None` once every sender is gone and the queue is empty. Cancel-safe: an
    /// item is taken only when the future completes.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.shared.lock();
        if let Some(item) = take(&mut state) {
            return Poll::Ready(Some(item));
        }
        if state.senders == 0 {
            return Poll::Ready(None);
        }
        match &mut state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        match take(&mut state) {
            Some(item) => Ok(item),
            None if state.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The front item; the buffer is given back when that empties the queue.
fn take<T>(state: &mut State<T>) -> Option<T> {
    let item = state.items.pop_front()?;
    if state.items.is_empty() {
        state.items = VecDeque::new();
    }
    Some(item)
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let items = {
            let mut state = self.shared.lock();
            state.receiver_gone = true;
            state.waker = None;
            std::mem::take(&mut state.items)
        };
        // Dropped outside the lock: an item's own drop may send on this queue.
        drop(items);
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("lean_queue::Receiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::time::Duration;

    #[test]
    fn items_arrive_in_order_up_to_the_capacity() {
        let (tx, mut rx) = channel(3);
        for i in 0..3 {
            tx.try_send(i).expect("room for three");
        }
        assert!(matches!(tx.try_send(9), Err(TrySendError::Full(9))));
        assert_eq!(rx.try_recv(), Ok(0));
        tx.try_send(3).expect("one slot freed");
        let got: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got, [1, 2, 3]);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[test]
    fn an_emptied_queue_holds_no_buffer() {
        let (tx, mut rx) = channel(64);
        assert_eq!(rx.shared.lock().items.capacity(), 0, "nothing allocated before a send");
        for i in 0..40 {
            tx.try_send(i).expect("under capacity");
        }
        assert!(rx.shared.lock().items.capacity() >= 40);
        while rx.try_recv().is_ok() {}
        assert_eq!(rx.shared.lock().items.capacity(), 0, "the buffer went back when the queue emptied");
    }

    #[test]
    fn the_receiver_gone_closes_the_queue_for_senders() {
        let (tx, rx) = channel(4);
        let other = tx.clone();
        assert!(tx.same_channel(&other));
        drop(rx);
        assert!(tx.is_closed());
        assert!(matches!(other.try_send(1), Err(TrySendError::Closed(1))));
    }

    #[tokio::test]
    async fn recv_wakes_on_a_send_and_ends_when_every_sender_is_gone() {
        let (tx, mut rx) = channel::<u32>(4);
        let second = tx.clone();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(v) = rx.recv().await {
                got.push(v);
            }
            got
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.try_send(1).expect("open");
        tokio::time::sleep(Duration::from_millis(20)).await;
        second.try_send(2).expect("open");
        drop(tx);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!reader.is_finished(), "one sender is still there");
        drop(second);
        let got = tokio::time::timeout(Duration::from_secs(5), reader).await.expect("recv ended").expect("no panic");
        assert_eq!(got, [1, 2]);
    }

    #[test]
    fn a_cancelled_recv_loses_nothing() {
        let (tx, mut rx) = channel(4);
        let mut cx = Context::from_waker(Waker::noop());
        {
            // Polled while empty, then dropped (as a losing `select!` branch is).
            let mut pending = std::pin::pin!(rx.recv());
            assert!(pending.as_mut().poll(&mut cx).is_pending());
        }
        tx.try_send(7).expect("open");
        tx.try_send(8).expect("open");
        {
            let mut ready = std::pin::pin!(rx.recv());
            assert_eq!(ready.as_mut().poll(&mut cx), Poll::Ready(Some(7)));
        }
        assert_eq!(rx.try_recv(), Ok(8), "only the completed recv took an item");
    }
}
