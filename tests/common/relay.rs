//! A UDP relay for WebRTC tests: the server announces the relay's address as its ICE candidate
//! (`[webrtc] public_ips`), clients send there, and the relay forwards each client's packets to the
//! server from a socket of its own (the ICE-lite server answers that socket) and the answers back.
//! It counts what it forwards to each client, by kind (STUN, DTLS, SRTP/SRTCP): "no media packet
//! reached this client", checked at the socket.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;

/// What the relay forwarded toward one client.
#[derive(Debug, Default)]
pub struct Counts {
    pub stun: AtomicU64,
    pub dtls: AtomicU64,
    /// SRTP and SRTCP (RFC 7983: first byte 128–191).
    pub media: AtomicU64,
    pub other: AtomicU64,
}

impl Counts {
    fn count(&self, packet: &[u8]) {
        let counter = match packet.first() {
            Some(0..=3) => &self.stun,
            Some(20..=63) => &self.dtls,
            Some(128..=191) => &self.media,
            _ => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn media(&self) -> u64 {
        self.media.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        [&self.stun, &self.dtls, &self.media, &self.other].iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// A running relay.
pub struct UdpRelay {
    pub addr: SocketAddr,
    clients: Arc<Mutex<HashMap<SocketAddr, Arc<Counts>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl UdpRelay {
    /// Relay `listen` (what clients are told) to `server`.
    pub async fn start(listen: SocketAddr, server: SocketAddr) -> UdpRelay {
        let socket = Arc::new(UdpSocket::bind(listen).await.expect("bind the relay"));
        let addr = socket.local_addr().expect("relay address");
        let clients: Arc<Mutex<HashMap<SocketAddr, Arc<Counts>>>> = Arc::default();
        let task = tokio::spawn({
            let clients = clients.clone();
            async move {
                let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
                let mut buf = vec![0u8; 2048];
                while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                    let upstream = match upstreams.get(&from) {
                        Some(u) => u.clone(),
                        None => {
                            let u = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind upstream"));
                            let counts = Arc::new(Counts::default());
                            clients.lock().expect("relay client map").insert(from, counts.clone());
                            tokio::spawn(back_to_client(u.clone(), socket.clone(), from, counts));
                            upstreams.insert(from, u.clone());
                            u
                        }
                    };
                    let _ = upstream.send_to(&buf[..n], server).await;
                }
            }
        });
        UdpRelay { addr, clients, task }
    }

    /// Every client address that sent through the relay, with what it was sent.
    pub fn clients(&self) -> Vec<(SocketAddr, Arc<Counts>)> {
        self.clients.lock().expect("relay client map").iter().map(|(a, c)| (*a, c.clone())).collect()
    }

    /// Media packets forwarded to all clients but `except`.
    pub fn media_to_others(&self, except: &[SocketAddr]) -> u64 {
        self.clients().iter().filter(|(a, _)| !except.contains(a)).map(|(_, c)| c.media()).sum()
    }
}

impl Drop for UdpRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn back_to_client(upstream: Arc<UdpSocket>, socket: Arc<UdpSocket>, client: SocketAddr, counts: Arc<Counts>) {
    let mut buf = vec![0u8; 2048];
    while let Ok((n, _)) = upstream.recv_from(&mut buf).await {
        counts.count(&buf[..n]);
        let _ = socket.send_to(&buf[..n], client).await;
    }
}
