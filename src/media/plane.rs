//! `MediaPlane`: starts the media workers (one OS thread each), binds their shared QUIC port, and
//! gives the control plane a handle per worker.

use super::cid::WorkerCidGenerator;
use super::command::{Command, ControlEvent, PeerMsg};
use super::metrics::RtcCounters;
use super::metrics::{MediaMetrics, WorkerCounters};
use super::quic;
use super::webrtc::{RtcSettings, dtls_certificate};
use super::worker::port::PortSetup;
use super::worker::{Worker, WorkerSetup};
use std::net::IpAddr;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Capacity of each worker's peer channel (batches of packets).
const PEER_QUEUE: usize = 8192;

/// Why the media plane could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    #[error("cannot bind the QUIC port {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    QuicTls(#[from] super::quic_tls::QuicTlsError),
    #[error("cannot start media worker thread: {0}")]
    Thread(String),
    #[error("cannot generate the DTLS certificate")]
    DtlsCertificate,
}

/// Settings for the media plane.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// Number of workers (at least 1, at most 255).
    pub workers: usize,
    pub quic_listen: SocketAddr,
    pub idle_timeout: Duration,
    pub max_message_bytes: usize,
    pub max_sessions_per_worker: usize,
    /// The QUIC stateless reset key (the same across restarts: `bootstrap::QUIC_RESET_KEY_FILE`).
    pub quic_reset_key: Vec<u8>,
    /// `quic.retry_above_handshakes`.
    pub retry_above_handshakes: usize,
    /// IP the WebRTC UDP sockets bind to.
    pub webrtc_ip: IpAddr,
    /// First WebRTC port (worker `i` binds `port_start + i`); 0 picks free ports.
    pub webrtc_port_start: u16,
    /// IPs announced as ICE host candidates (empty: `webrtc_ip`).
    pub webrtc_public_ips: Vec<IpAddr>,
    pub webrtc_initial_bitrate_bps: u64,
    /// `webrtc.reconnect_grace_seconds`.
    pub webrtc_reconnect_grace: Duration,
    /// Capacity of each worker's command queue.
    pub command_queue: usize,
}

/// The control plane's handle on one worker.
#[derive(Clone)]
pub struct WorkerHandle {
    pub index: usize,
    pub commands: mpsc::Sender<Command>,
    /// `switchboard_worker_command_waits_total{worker}`.
    waits: prometheus::IntCounter,
}

/// The worker has stopped (the server is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the media worker has stopped")]
pub struct WorkerGone;

impl WorkerHandle {
    /// Queue a command. When the queue is full this waits for room (and counts the wait): a
    /// state change may be delayed, never dropped.
    pub async fn send(&self, cmd: Command) -> Result<(), WorkerGone> {
        match self.commands.try_send(cmd) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(cmd)) => {
                self.waits.inc();
                self.commands.send(cmd).await.map_err(|_| WorkerGone)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(WorkerGone),
        }
    }

    /// Send a command that carries a reply channel and wait for the reply.
    pub async fn request<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, WorkerGone> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).await?;
        rx.await.map_err(|_| WorkerGone)
    }

    /// Wait until the worker has applied every command queued before this call.
    pub async fn sync(&self) -> Result<(), WorkerGone> {
        self.request(Command::Sync).await
    }
}

/// The running workers.
pub struct MediaPlane {
    workers: Vec<WorkerHandle>,
    threads: Vec<std::thread::JoinHandle<()>>,
    quic_addr: SocketAddr,
    webrtc_addrs: Vec<SocketAddr>,
}

impl MediaPlane {
    /// Bind the QUIC port and start the workers. `tls` is the server's certificate config.
    pub fn start(
        settings: &MediaSettings,
        tls: rustls::ServerConfig,
        metrics: &MediaMetrics,
        control: mpsc::Sender<ControlEvent>,
    ) -> Result<Self, MediaError> {
        let n = settings.workers.clamp(1, 255);
        let bind_err = |addr, e: std::io::Error| MediaError::Bind { addr, reason: e.to_string() };
        let sockets =
            quic::bind_worker_sockets(settings.quic_listen, n).map_err(|e| bind_err(settings.quic_listen, e))?;
        let quic_addr = sockets[0].local_addr().map_err(|e| bind_err(settings.quic_listen, e))?;
        let server_config =
            Arc::new(quic::server_config(tls, settings.idle_timeout, metrics.quic_tls_sessions.clone())?);
        let cert = dtls_certificate().ok_or(MediaError::DtlsCertificate)?;
        let mut rtc_sockets = Vec::with_capacity(n);
        for i in 0..n {
            let port = if settings.webrtc_port_start == 0 {
                0
            } else {
                settings.webrtc_port_start.saturating_add(u16::try_from(i).unwrap_or(u16::MAX))
            };
            let addr = SocketAddr::new(settings.webrtc_ip, port);
            let socket = std::net::UdpSocket::bind(addr).map_err(|e| bind_err(addr, e))?;
            socket.set_nonblocking(true).map_err(|e| bind_err(addr, e))?;
            // Bigger buffers absorb what arrives while a worker is busy fanning out, and the
            // bursts of the fan-out itself (the kernel may cap them: `net.core.rmem_max`).
            let sock = socket2::SockRef::from(&socket);
            let _ = sock.set_recv_buffer_size(4 << 20);
            let _ = sock.set_send_buffer_size(4 << 20);
            if !super::rx_time::enable(&socket) {
                tracing::warn!(%addr, "no kernel receive timestamps: WebRTC packets are timed when read, so a busy worker shows in publishers' congestion feedback");
            }
            rtc_sockets.push(socket);
        }
        let webrtc_addrs: Vec<SocketAddr> = rtc_sockets
            .iter()
            .map(|s| s.local_addr())
            .collect::<Result<_, _>>()
            .map_err(|e| bind_err(settings.quic_listen, e))?;
        let public_ips = if settings.webrtc_public_ips.is_empty() {
            vec![settings.webrtc_ip]
        } else {
            settings.webrtc_public_ips.clone()
        };
        let (peer_txs, peer_rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel::<PeerMsg>(PEER_QUEUE)).unzip();
        let mut workers = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for (index, ((socket, peer_rx), rtc_socket)) in sockets.into_iter().zip(peer_rxs).zip(rtc_sockets).enumerate() {
            let port = webrtc_addrs[index].port();
            let rtc_settings = RtcSettings {
                cert: cert.clone(),
                candidates: public_ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect(),
                initial_bitrate: str0m::bwe::Bitrate::bps(settings.webrtc_initial_bitrate_bps),
                reconnect_grace: settings.webrtc_reconnect_grace,
            };
            let (tx, commands) = mpsc::channel(settings.command_queue.max(1));
            let reset_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &settings.quic_reset_key);
            let mut endpoint_config = quinn_proto::EndpointConfig::new(Arc::new(reset_key));
            let worker_id = index as u8;
            endpoint_config.cid_generator(move || Box::new(WorkerCidGenerator::new(worker_id)));
            let setup = WorkerSetup {
                index,
                workers: n,
                socket: PortSetup::Bound(socket),
                rtc_socket: PortSetup::Bound(rtc_socket),
                rtc_settings,
                rtc_counters: RtcCounters::new(metrics),
                rtc_sessions_gauge: metrics.sessions.with_label_values(&["webrtc", &index.to_string()]),
                endpoint_config: Arc::new(endpoint_config),
                server_config: server_config.clone(),
                commands,
                peer_rx,
                peers: peer_txs.clone(),
                control: control.clone(),
                counters: WorkerCounters::new(metrics, "quic"),
                state_gauges: super::metrics::StateGauges::new(metrics, index),
                sessions_gauge: metrics.sessions.with_label_values(&["quic", &index.to_string()]),
                max_message_bytes: settings.max_message_bytes,
                max_sessions: settings.max_sessions_per_worker,
                retry_above_handshakes: settings.retry_above_handshakes,
            };
            let thread = std::thread::Builder::new()
                .name(format!("media-worker-{index}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        Ok(rt) => rt,
                        Err(e) => {
                            tracing::error!(worker = index, error = %e, "cannot build the worker runtime");
                            return;
                        }
                    };
                    let run = std::panic::AssertUnwindSafe(|| {
                        runtime.block_on(async move {
                            if index == 0 && crate::panics::injected("worker") {
                                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                                panic!("injected by SWITCHBOARD_DEBUG_PANIC=worker");
                            }
                            match Worker::new(setup) {
                                Ok(worker) => worker.run().await,
                                Err(e) => tracing::error!(worker = index, error = %e, "media worker failed to start"),
                            }
                        });
                    });
                    // See `crate::panics`: the calls on this worker are gone, so the process stops
                    // rather than serve signaling for media that no longer flows.
                    if let Err(payload) = std::panic::catch_unwind(run) {
                        let message = crate::panics::message(payload.as_ref());
                        tracing::error!(
                            worker = index,
                            panic = message,
                            "media worker {index} panicked; aborting the process so its supervisor restarts it"
                        );
                        eprintln!("switchboard: media worker {index} panicked ({message}); aborting");
                        std::process::abort();
                    }
                })
                .map_err(|e| MediaError::Thread(e.to_string()))?;
            let waits = metrics.command_waits.with_label_values(&[&index.to_string()]);
            workers.push(WorkerHandle { index, commands: tx, waits });
            threads.push(thread);
        }
        tracing::info!(workers = n, %quic_addr, webrtc = ?webrtc_addrs, "media workers started");
        Ok(Self { workers, threads, quic_addr, webrtc_addrs })
    }

    pub fn quic_addr(&self) -> SocketAddr {
        self.quic_addr
    }

    /// The WebRTC UDP address of each worker.
    pub fn webrtc_addrs(&self) -> &[SocketAddr] {
        &self.webrtc_addrs
    }

    pub fn workers(&self) -> &[WorkerHandle] {
        &self.workers
    }

    /// Stop every worker (connections are closed) and wait for the threads.
    pub async fn shutdown(self) {
        for w in &self.workers {
            let _ = w.commands.send(Command::Shutdown).await;
        }
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}
