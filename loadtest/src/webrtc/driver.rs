//! The driver: one OS thread that owns every peer (`Peer`: a str0m `Rtc` and its UDP socket)
//! and runs them all from one loop. It waits on every socket at once (mio, edge-triggered),
//! feeds datagrams and timeouts to the peer they belong to, sends each publisher's synthetic
//! media every 20 ms, and drains str0m's output. Signaling tasks talk to it with `Command`s
//! through a channel and a waker; nothing is shared with them but the run's counters.
//!
//! Each peer has its own socket: every peer talks to the same server address (a media worker's
//! port), and the server tells its WebRTC clients apart by their address, so peers sharing one
//! socket could neither be told apart by the server nor, once connected, by `Rtc::accepts`.

use super::peer::{Peer, RidOrder};
use crate::media::{Measured, Shared};
use anyhow::Context as _;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, TryRecvError};
use std::time::{Duration, Instant};
use str0m::config::DtlsCert;
use tokio::sync::oneshot;

/// How often publishers send (an audio packet each tick, video frames every other tick).
const TICK: Duration = Duration::from_millis(20);
/// The token of the waker; peers are numbered from 1.
const WAKE: Token = Token(0);

/// A peer, as the signaling tasks name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId(usize);

/// What the signaling side asks of the driver.
enum Command {
    /// A new peer; a publisher (`publish: Some(video)`) gets its offer back.
    Add {
        publish: Option<bool>,
        seed: u32,
        reply: oneshot::Sender<anyhow::Result<(PeerId, Option<String>)>>,
    },
    AcceptAnswer {
        peer: PeerId,
        sdp: String,
        reply: oneshot::Sender<anyhow::Result<()>>,
    },
    AcceptOffer {
        peer: PeerId,
        sdp: String,
        reply: oneshot::Sender<anyhow::Result<String>>,
    },
    /// Close a peer and return what it measured.
    Remove {
        peer: PeerId,
        reply: oneshot::Sender<anyhow::Result<Measured>>,
    },
}

/// The signaling side's handle on the driver (cheap to clone). The driver stops when every
/// handle is gone.
#[derive(Clone)]
pub struct DriverHandle {
    commands: mpsc::Sender<Command>,
    waker: Arc<Waker>,
}

impl DriverHandle {
    /// Start the driver thread; peers' sockets bind to `local_ip`, publishers offer their
    /// simulcast rids in order `rids`.
    pub fn start(local_ip: IpAddr, rids: RidOrder, shared: Arc<Shared>) -> anyhow::Result<DriverHandle> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let (commands, rx) = mpsc::channel();
        let cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .context("str0m cannot make a DTLS certificate")?;
        let driver = Driver { poll, commands: rx, peers: HashMap::new(), next_peer: 1, local_ip, rids, cert, shared };
        std::thread::Builder::new().name("webrtc-driver".into()).spawn(move || driver.run())?;
        Ok(DriverHandle { commands, waker })
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<anyhow::Result<T>>) -> Command) -> anyhow::Result<T> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(make(reply)).map_err(|_| anyhow::anyhow!("the WebRTC driver stopped"))?;
        self.waker.wake()?;
        answer.await.map_err(|_| anyhow::anyhow!("the WebRTC driver stopped"))?
    }

    /// A new peer; with `publish: Some(video)` it publishes audio (and video) and its offer is
    /// returned.
    pub async fn add(&self, publish: Option<bool>, seed: u32) -> anyhow::Result<(PeerId, Option<String>)> {
        self.call(|reply| Command::Add { publish, seed, reply }).await
    }

    pub async fn accept_answer(&self, peer: PeerId, sdp: String) -> anyhow::Result<()> {
        self.call(|reply| Command::AcceptAnswer { peer, sdp, reply }).await
    }

    pub async fn accept_offer(&self, peer: PeerId, sdp: String) -> anyhow::Result<String> {
        self.call(|reply| Command::AcceptOffer { peer, sdp, reply }).await
    }

    pub async fn remove(&self, peer: PeerId) -> anyhow::Result<Measured> {
        self.call(|reply| Command::Remove { peer, reply }).await
    }
}

struct Driver {
    poll: Poll,
    commands: mpsc::Receiver<Command>,
    peers: HashMap<usize, Peer>,
    next_peer: usize,
    local_ip: IpAddr,
    rids: RidOrder,
    /// Every peer's DTLS certificate.
    cert: DtlsCert,
    shared: Arc<Shared>,
}

impl Driver {
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; 2048];
        let mut tick: u64 = 0;
        let mut next_tick = Instant::now();
        loop {
            loop {
                match self.commands.try_recv() {
                    Ok(command) => self.handle(command),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return self.stop(),
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                for peer in self.peers.values_mut() {
                    peer.send_media(tick, &self.shared);
                }
                if let Some(us) = thread_cpu_us() {
                    self.shared.driver_busy_us.store(us, Ordering::Relaxed);
                }
                if let Ok(mut recent) = self.shared.recent.lock() {
                    for peer in self.peers.values_mut() {
                        recent.merge(peer.take_recent());
                    }
                }
                tick += 1;
                next_tick += TICK;
                if next_tick < now {
                    // Running late (a busy machine): skip the missed ticks, as `media.rs` does.
                    next_tick = now + TICK;
                }
            }
            let mut wake = next_tick;
            for peer in self.peers.values_mut() {
                if peer.next_timeout <= now {
                    peer.handle_timeout(now, &self.shared);
                }
                wake = wake.min(peer.next_timeout);
            }
            let wait = wake.saturating_duration_since(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(wait))
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                tracing::error!(error = %e, "the WebRTC driver cannot poll its sockets");
                return self.stop();
            }
            for event in events.iter() {
                if event.token() == WAKE {
                    continue;
                }
                if let Some(peer) = self.peers.get_mut(&event.token().0) {
                    peer.read_socket(&mut buf, &self.shared);
                }
            }
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Add { publish, seed, reply } => {
                let _ = reply.send(self.add(publish, seed));
            }
            Command::AcceptAnswer { peer, sdp, reply } => {
                let result = match self.peers.get_mut(&peer.0) {
                    Some(p) => p.accept_answer(&sdp, &self.shared),
                    None => Err(anyhow::anyhow!("no peer {peer:?}")),
                };
                let _ = reply.send(result);
            }
            Command::AcceptOffer { peer, sdp, reply } => {
                let result = match self.peers.get_mut(&peer.0) {
                    Some(p) => p.accept_offer(&sdp, &self.shared),
                    None => Err(anyhow::anyhow!("no peer {peer:?}")),
                };
                let _ = reply.send(result);
            }
            Command::Remove { peer, reply } => {
                let result = match self.peers.remove(&peer.0) {
                    Some(mut p) => {
                        let _ = self.poll.registry().deregister(p.socket());
                        p.finish()
                    }
                    None => Err(anyhow::anyhow!("no peer {peer:?}")),
                };
                let _ = reply.send(result);
            }
        }
    }

    fn add(&mut self, publish: Option<bool>, seed: u32) -> anyhow::Result<(PeerId, Option<String>)> {
        let (mut peer, offer) = Peer::new(self.local_ip, &self.cert, publish, self.rids, seed)?;
        let id = self.next_peer;
        self.next_peer += 1;
        self.poll.registry().register(peer.socket(), Token(id), Interest::READABLE)?;
        self.peers.insert(id, peer);
        Ok((PeerId(id), offer))
    }

    fn stop(&mut self) {
        let dropped: u64 = self.peers.values().map(|p| p.dropped).sum();
        tracing::debug!(peers = self.peers.len(), dropped, "the WebRTC driver stops");
    }
}

/// The CPU time this thread has used, in microseconds.
fn thread_cpu_us() -> Option<u64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u64::try_from(ts.tv_nsec).ok()?;
    Some(secs * 1_000_000 + nanos / 1_000)
}
