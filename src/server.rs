//! Start-up and shutdown of the whole server: prepare the data directory, open the store, build
//! the services, bind the listeners, and stop gracefully.

use crate::api::{self, Health, Services};
use crate::auth::{HmacVerifier, TokenIssuer, TokenLifetime, TokenVerifier};
use crate::bootstrap::{self, BootstrapError};
use crate::calls::{CallMetrics, CallRegistry, CallSettings, LiveCalls};
use crate::config::Config;
use crate::devices::DeviceRegistry;
use crate::identity::IdentityDirectory;
use crate::media::metrics::MediaMetrics;
use crate::media::plane::{MediaPlane, MediaSettings};
use crate::meeting_directory::{MeetingDirectory, MeetingLimits};
use crate::metrics::Metrics;
use crate::organization::{ForeignConfiguredUser, OrgPolicy};
use crate::room_directory::{RoomDirectory, RosterLimits};
use crate::rooms::{RoomLimits, RoomMetrics, Rooms};
use crate::signaling::client_addr::JoinLimiter;
use crate::signaling::context::SignalingContext;
use crate::store::{Store, StoreError};
use crate::tls::{self, TlsError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error(transparent)]
    Media(#[from] crate::media::plane::MediaError),
    #[error(transparent)]
    Organization(#[from] ForeignConfiguredUser),
    #[error("cannot read the certificate to trust {path}: {reason}")]
    Trust { path: PathBuf, reason: String },
    #[error("call_automation.incoming_call_subscriptions: {0}")]
    IncomingCalls(String),
}

/// A started server. Drop does not stop it; call `stop`.
pub struct RunningServer {
    pub https_addr: SocketAddr,
    /// The QUIC endpoint (UDP) for native clients.
    pub quic_addr: SocketAddr,
    /// The base URL clients use, e.g. `https://127.0.0.1:8443/`.
    pub endpoint: String,
    /// The certificate file clients should trust.
    pub trust_cert: PathBuf,
    /// Where the connection string was written.
    pub connection_string_file: PathBuf,
    access_key_b64: String,
    services: api::AppState,
    shutdown: CancellationToken,
    signaling_shutdown: CancellationToken,
    media: MediaPlane,
    tasks: JoinSet<()>,
}

impl RunningServer {
    /// `endpoint=...;accesskey=...` for the primary access key.
    pub fn connection_string(&self) -> String {
        connection_string(&self.endpoint, &self.access_key_b64)
    }

    /// The identity directory (tests forget its cache and slow its store down).
    pub fn identity_directory(&self) -> Arc<crate::identity::IdentityDirectory> {
        self.services.directory.clone()
    }

    /// The issuer of access tokens (tests mint tokens with chosen times through it).
    pub fn token_issuer(&self) -> &crate::auth::TokenIssuer {
        &self.services.issuer
    }

    /// The WebRTC UDP address of each media worker.
    pub fn webrtc_addrs(&self) -> &[SocketAddr] {
        self.media.webrtc_addrs()
    }

    /// The ACS rooms (tests check admission through it).
    pub fn room_directory(&self) -> Arc<RoomDirectory> {
        self.services.room_directory.clone()
    }

    /// The meetings (the join path and tests find meetings and check passcodes through it).
    pub fn meeting_directory(&self) -> Arc<MeetingDirectory> {
        self.services.meeting_directory.clone()
    }

    /// Call automation (tests subscribe identities created at run time to incoming calls).
    pub fn automation(&self) -> Arc<crate::call_automation::CallAutomation> {
        self.services.automation.clone()
    }

    /// The webhook dispatcher (call automation publishes through it; tests too).
    pub fn webhooks(&self) -> crate::webhooks::Webhooks {
        self.services.webhooks.clone()
    }

    /// The verifier every join path uses (tests check revocation through it).
    pub fn token_verifier(&self) -> Arc<crate::auth::TokenVerifier> {
        self.services.verifier.clone()
    }

    /// The line printed when the server is ready to take requests.
    pub fn ready_line(&self) -> String {
        format!(
            "switchboard ready: {} quic={} (trust {}; connection string in {}, or run `switchboard connection-string`)",
            self.endpoint,
            self.quic_addr,
            self.trust_cert.display(),
            self.connection_string_file.display()
        )
    }

    /// Stop taking new work, let open work finish (within the configured grace), and return.
    pub async fn stop(mut self) {
        self.services.health.set_ready(false);
        // Tell every connected client first, give the notices a moment to leave, then close
        // the media connections and the HTTP listener.
        self.signaling_shutdown.cancel();
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.media.shutdown().await;
        self.shutdown.cancel();
        // Logs and counts what was still queued.
        self.services.webhooks.close();
        while self.tasks.join_next().await.is_some() {}
    }
}

fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// `endpoint=<url>;accesskey=<base64>`.
pub fn connection_string(endpoint: &str, access_key_b64: &str) -> String {
    format!("endpoint={endpoint};accesskey={access_key_b64}")
}

/// The base URL for a listener: the configured public URL, or one derived from the bound address
/// (an unspecified address is reached through loopback).
pub fn endpoint_for(public_url: &str, addr: SocketAddr) -> String {
    if !public_url.is_empty() {
        let trimmed = public_url.trim_end_matches('/');
        return format!("{trimmed}/");
    }
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("https://{}/", SocketAddr::new(ip, addr.port()))
}

/// The name the server's certificate is checked against by its own call automation legs: the
/// public URL's host, or `localhost` (which the generated certificate covers).
fn leg_server_name(public_url: &str) -> String {
    let host = public_url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default())
        .map(|authority| match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        })
        .unwrap_or_default();
    if host.is_empty() { "localhost".to_owned() } else { host.to_owned() }
}

/// Start every part of the server described by `config`.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    let prepared = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || bootstrap::prepare(&config))
            .await
            .expect("bootstrap does not panic; a panic there is a bug to surface")?
    };
    for note in &prepared.generated {
        tracing::info!("generated {note}");
    }
    let access_key_b64 = prepared.primary_access_key_b64();
    let store = Arc::new(Store::open(&prepared.db_path)?);
    let metrics = Arc::new(Metrics::new());
    let directory = Arc::new(IdentityDirectory::new(store.clone()));
    let org_policy = Arc::new(OrgPolicy::new(config.organization.lists(), &prepared.resource_id)?);
    // Bound before the services are built: join links are made on the public endpoint, whose
    // port is known only now when it is 0. Connections wait in the backlog until serving starts.
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|e| StartError::Bind { addr: config.http.listen, reason: e.to_string() })?;
    let https_addr =
        listener.local_addr().map_err(|e| StartError::Bind { addr: config.http.listen, reason: e.to_string() })?;
    let endpoint = endpoint_for(&config.http.public_url, https_addr);
    let meeting_directory = Arc::new(MeetingDirectory::new(
        store.clone(),
        prepared.resource_id.clone(),
        &endpoint,
        MeetingLimits {
            max_attendees: to_usize(config.meetings.max_attendees_per_meeting.get()),
            max_subject_chars: to_usize(config.meetings.max_subject_chars.get()),
            page_size: to_usize(config.meetings.page_size.get()),
        },
    ));
    let room_directory = Arc::new(RoomDirectory::new(
        store,
        prepared.resource_id.clone(),
        RosterLimits {
            max_participants_per_room: to_usize(config.rooms.max_participants_per_room.get()),
            page_size: to_usize(config.rooms.page_size.get()),
        },
    ));
    let keys = Arc::new(prepared.keys);
    let verifier = Arc::new(TokenVerifier::new(
        keys.clone(),
        directory.clone(),
        prepared.resource_id.clone(),
        config.tokens.verify_leeway_seconds.get(),
        &metrics.tokens,
    ));
    let default_lifetime =
        TokenLifetime::from_minutes(i64::try_from(config.tokens.default_lifetime_minutes.get()).unwrap_or(i64::MAX))
            .expect("the config bounds default_lifetime_minutes to 60..=1440, the token lifetime range");
    let certs = tls::load_certs(&prepared.tls_chain)?;
    let key = tls::load_key(&prepared.tls_key)?;
    let tls_config = Arc::new(tls::server_config(certs.clone(), key.clone_key(), &[b"h2", b"http/1.1"])?);

    // The media plane and the signaling control loop.
    let limits = &config.limits;
    let workers = match config.media.workers.get() {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        n => usize::try_from(n).unwrap_or(1),
    };
    let (control_tx, control_rx) = tokio::sync::mpsc::channel(4096);
    let media_metrics = MediaMetrics::new(metrics.registry());
    let media = MediaPlane::start(
        &MediaSettings {
            workers,
            quic_listen: config.quic.listen,
            idle_timeout: Duration::from_secs(config.quic.idle_timeout_seconds.get()),
            max_message_bytes: to_usize(limits.max_message_bytes.get()),
            max_sessions_per_worker: to_usize(config.media.max_sessions_per_worker.get()),
            retry_above_handshakes: to_usize(config.quic.retry_above_handshakes.get()),
            quic_reset_key: prepared.quic_reset_key.clone(),
            webrtc_ip: config.webrtc.listen_ip,
            webrtc_port_start: u16::try_from(config.webrtc.port_start.get()).unwrap_or(0),
            webrtc_public_ips: config.webrtc.public_ips.clone(),
            webrtc_initial_bitrate_bps: config.webrtc.initial_bitrate_kbps.get() * 1000,
            webrtc_reconnect_grace: Duration::from_secs(config.webrtc.reconnect_grace_seconds.get()),
            command_queue: to_usize(config.media.command_queue.get()),
        },
        tls::server_config(certs, key, &[])?,
        &media_metrics,
        control_tx,
    )?;
    let rooms = Arc::new(Rooms::new(
        RoomLimits {
            max_rooms: to_usize(limits.max_rooms.get()),
            max_participants: to_usize(limits.max_participants_per_room.get()),
            max_publishers: to_usize(limits.max_publishers_per_room.get()),
            max_tracks_per_participant: to_usize(limits.max_tracks_per_participant.get()),
        },
        RoomMetrics::new(metrics.registry()),
    ));
    let devices = Arc::new(DeviceRegistry::new(metrics.registry()));
    let calls = Arc::new(CallRegistry::new(
        devices.clone(),
        CallSettings {
            ring_timeout: Duration::from_secs(config.calls.ring_timeout_seconds.get()),
            max_targets: to_usize(config.calls.max_targets.get()),
        },
        CallMetrics::new(metrics.registry()),
    ));
    let live = Arc::new(LiveCalls::new(rooms.clone(), media.workers().to_vec()));
    let signaling_shutdown = CancellationToken::new();
    let panics = crate::panics::register_metric(metrics.registry());
    let signaling = Arc::new(SignalingContext {
        verifier: verifier.clone(),
        directory: directory.clone(),
        rooms,
        workers: media.workers().to_vec(),
        live,
        devices: devices.clone(),
        calls,
        resource_id: prepared.resource_id.clone(),
        room_directory: room_directory.clone(),
        meeting_directory: meeting_directory.clone(),
        passcodes: crate::signaling::PasscodeGuard::new(
            u32::try_from(config.meetings.wrong_passcodes_per_minute_per_address.get()).unwrap_or(u32::MAX),
            u32::try_from(config.meetings.wrong_passcodes_per_minute_per_meeting.get()).unwrap_or(u32::MAX),
        ),
        lobby_timeout: Duration::from_secs(config.meetings.lobby_timeout_seconds.get()),
        join_limiter: JoinLimiter::new(u32::try_from(limits.joins_per_second_per_address.get()).unwrap_or(u32::MAX)),
        trusted_proxies: config.http.trusted_proxies.clone().into(),
        messages_per_second: u32::try_from(limits.messages_per_second_per_session.get()).unwrap_or(u32::MAX),
        shutdown: signaling_shutdown.clone(),
        messages: SignalingContext::messages_metric(metrics.registry()),
        max_message_bytes: to_usize(limits.max_message_bytes.get()),
        register_timeout: Duration::from_secs(limits.register_timeout_seconds.get()),
        panics: panics.clone(),
        placement: std::sync::atomic::AtomicUsize::new(0),
    });
    let shutdown = CancellationToken::new();
    let webhooks = crate::webhooks::Webhooks::new(&config.webhooks, keys.clone(), metrics.registry(), shutdown.clone())
        .with_issuer(&endpoint);
    // Call automation: the server's legs are clients of its own QUIC listener.
    let trust_pem = std::fs::read(&prepared.tls_trust)
        .map_err(|e| StartError::Trust { path: prepared.tls_trust.clone(), reason: e.to_string() })?;
    let legs = crate::call_automation::LegConnector::new(
        media.quic_addr(),
        trust_pem,
        leg_server_name(&config.http.public_url),
        Arc::new(TokenIssuer::new(keys.clone(), directory.clone(), prepared.resource_id.clone(), org_policy.clone())),
        directory.clone(),
    );
    let automation = Arc::new(crate::call_automation::CallAutomation::new(
        signaling.clone(),
        legs,
        webhooks.clone(),
        crate::call_automation::AutomationSettings {
            ring_timeout: Duration::from_secs(config.calls.ring_timeout_seconds.get()),
            max_targets: to_usize(config.calls.max_targets.get()),
        },
        crate::call_automation::AutomationMetrics::new(metrics.registry()),
        crate::call_automation::media::MediaLibrary::new(&config.call_automation),
    ));
    automation
        .listen_for_incoming(&config.call_automation.incoming_call_subscriptions)
        .map_err(|e| StartError::IncomingCalls(e.to_string()))?;
    let connection_metrics = crate::https::limits::ConnectionMetrics::register(metrics.registry(), panics);
    let connections = crate::https::limits::ConnectionLimits::new(
        crate::https::limits::ListenerLimits {
            max_connections: usize::try_from(config.http.max_connections.get()).unwrap_or(usize::MAX),
            max_per_address: u32::try_from(config.http.max_connections_per_address.get()).unwrap_or(u32::MAX),
            header_timeout: Duration::from_secs(config.http.header_timeout_seconds.get()),
            idle_timeout: Duration::from_secs(config.http.idle_timeout_seconds.get()),
            trusted_proxies: config.http.trusted_proxies.clone().into(),
        },
        connection_metrics.clone(),
    );
    let services = Arc::new(Services {
        issuer: TokenIssuer::new(keys.clone(), directory.clone(), prepared.resource_id.clone(), org_policy),
        directory: directory.clone(),
        room_directory,
        meeting_directory,
        verifier: verifier.clone(),
        keys,
        hmac: HmacVerifier::new(&prepared.access_keys, Duration::from_secs(config.auth.max_clock_skew_seconds.get())),
        metrics,
        resource_id: prepared.resource_id.clone(),
        default_lifetime,
        max_body_bytes: usize::try_from(config.http.max_body_bytes.get()).unwrap_or(usize::MAX),
        body_timeout: Duration::from_secs(config.http.body_timeout_seconds.get()),
        timed_out: connection_metrics.timed_out.clone(),
        health: Health::default(),
        signaling: signaling.clone(),
        automation,
        dev_token_endpoint: config.dev.token_endpoint,
        repeatability: Default::default(),
        metrics_token: Some(config.http.metrics_token.clone()).filter(|t| !t.is_empty()),
        webhooks,
    });

    if config.dev.token_endpoint {
        tracing::warn!("dev.token_endpoint is on: POST /dev/token hands out tokens to anyone");
    }
    let quic_addr = media.quic_addr();

    let mut tasks = JoinSet::new();
    let grace = Duration::from_secs(config.server.shutdown_grace_seconds.get());
    tasks.spawn(crate::https::serve(
        listener,
        tls_config,
        api::router(services.clone()),
        connections,
        shutdown.clone(),
        grace,
    ));
    tasks.spawn(crate::signaling::quic_session::run_control(signaling, control_rx));
    let identity_events = directory.subscribe();
    tasks.spawn(crate::devices::run_revocation_fanout(devices, directory.clone(), identity_events, shutdown.clone()));

    let connection_string_file = prepared.data_dir.join("connection-string");
    bootstrap::write_private(&connection_string_file, &format!("{}\n", connection_string(&endpoint, &access_key_b64)))?;

    services.health.set_ready(true);
    Ok(RunningServer {
        https_addr,
        quic_addr,
        signaling_shutdown,
        media,
        endpoint,
        trust_cert: prepared.tls_trust,
        connection_string_file,
        access_key_b64,
        services,
        shutdown,
        tasks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legs_check_the_certificate_against_the_public_host() {
        assert_eq!(leg_server_name(""), "localhost");
        assert_eq!(leg_server_name("https://sfu.example.com:8443/x"), "sfu.example.com");
        assert_eq!(leg_server_name("https://[::1]:8443"), "::1");
    }

    #[test]
    fn endpoint_derivation() {
        assert_eq!(endpoint_for("", "127.0.0.1:8443".parse().expect("addr")), "https://127.0.0.1:8443/");
        assert_eq!(endpoint_for("", "0.0.0.0:1".parse().expect("addr")), "https://127.0.0.1:1/");
        assert_eq!(endpoint_for("", "[::]:2".parse().expect("addr")), "https://[::1]:2/");
        assert_eq!(
            endpoint_for("https://sfu.example.com", "0.0.0.0:1".parse().expect("addr")),
            "https://sfu.example.com/"
        );
    }
}
