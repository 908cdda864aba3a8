//! The configuration tree. Every key has a default (the same one `config.toml` documents), unknown
//! keys are refused, and ranges are checked while parsing (`Bounded`), so the rest of the server
//! receives values it can use without re-validating them.

mod bounded;
mod load;

pub use bounded::{Bounded, OutOfRange};
pub use load::{ConfigError, LoadedConfig, load, load_from_str};

use crate::organization::{ConfiguredUser, ExternalIdPattern, OrgLists};
use crate::webhooks::HostPattern;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The whole configuration (`config.toml`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerSection,
    pub http: HttpSection,
    pub auth: AuthSection,
    pub tokens: TokenSection,
    pub quic: QuicSection,
    pub webrtc: WebRtcSection,
    pub media: MediaSection,
    pub limits: LimitsSection,
    pub calls: CallsSection,
    pub rooms: RoomsSection,
    pub meetings: MeetingsSection,
    pub organization: OrganizationSection,
    pub webhooks: WebhooksSection,
    pub call_automation: CallAutomationSection,
    pub dev: DevSection,
}

/// `[server]`: where state lives and how the process behaves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Directory for the SQLite store and generated secrets. Relative paths are resolved against
    /// the directory of the config file.
    pub data_dir: PathBuf,
    /// The ACS resource ID that appears in identity raw IDs (`8:acs:<resource_id>_<uuid>`).
    /// Empty: generate a UUID on first start and keep it in `<data_dir>/resource-id`.
    pub resource_id: String,
    /// `tracing` filter directive, overridden by `RUST_LOG` when that is set.
    pub log: String,
    /// How long a graceful stop waits for open requests and calls to finish.
    pub shutdown_grace_seconds: Bounded<0, 300>,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            resource_id: String::new(),
            log: "info".to_owned(),
            shutdown_grace_seconds: Bounded::new_const(10),
        }
    }
}

/// `[http]`: the HTTPS listener (REST API, WebSocket signaling, metrics).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Address and port of the HTTPS listener. Port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// The URL clients use to reach the listener, used in connection strings.
    /// Empty: `https://<listen address>/`.
    pub public_url: String,
    /// PEM certificate chain. Empty: generate a self-signed one in `<data_dir>/tls/`.
    pub tls_cert: PathBuf,
    /// PEM private key for `tls_cert`. Must be set exactly when `tls_cert` is.
    pub tls_key: PathBuf,
    /// Extra DNS names or IP addresses for the generated certificate (it always covers
    /// `localhost`, `127.0.0.1` and `::1`).
    pub tls_names: Vec<String>,
    /// Largest accepted request body. A larger `Content-Length` is refused before any of the body
    /// is read.
    pub max_body_bytes: Bounded<1024, 16_777_216>,
    /// Open connections the listener holds at once (WebSocket sessions included); more are
    /// closed as soon as they are accepted.
    pub max_connections: Bounded<1, 1_000_000>,
    /// Open connections from one client address (IPv6: one /64) at once. Trusted proxies are
    /// exempt.
    pub max_connections_per_address: Bounded<1, 1_000_000>,
    /// How long a new connection may take to finish its TLS handshake and send a whole request
    /// head.
    pub header_timeout_seconds: Bounded<1, 300>,
    /// How long a kept-alive connection may wait, with no request in progress, for its next one.
    pub idle_timeout_seconds: Bounded<1, 3600>,
    /// How long a request body may take to arrive once its head has.
    pub body_timeout_seconds: Bounded<1, 3600>,
    /// Bearer token `GET /metrics` requires (`Authorization: Bearer <token>`). Empty: public.
    pub metrics_token: String,
    /// Reverse proxies (IP addresses or CIDR ranges) whose `X-Forwarded-For` names the client
    /// of a WebSocket session, for the per-address join limit. Empty: the peer address counts
    /// (behind a proxy, every client would share the proxy's budget).
    pub trusted_proxies: Vec<crate::signaling::client_addr::IpRange>,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            public_url: String::new(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            tls_names: Vec::new(),
            max_body_bytes: Bounded::new_const(1_048_576),
            max_connections: Bounded::new_const(10_000),
            max_connections_per_address: Bounded::new_const(256),
            header_timeout_seconds: Bounded::new_const(10),
            idle_timeout_seconds: Bounded::new_const(60),
            body_timeout_seconds: Bounded::new_const(30),
            metrics_token: String::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[auth]`: how trusted backends authenticate management calls (ACS HMAC-SHA256).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Base64 access keys; any of them signs a valid request (list several to rotate).
    /// Empty: generate one on first start and keep it in `<data_dir>/access-key`.
    pub access_keys: Vec<String>,
    /// How far `x-ms-date` may be from the server clock.
    pub max_clock_skew_seconds: Bounded<1, 3600>,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self { access_keys: Vec::new(), max_clock_skew_seconds: Bounded::new_const(300) }
    }
}

/// `[tokens]`: access tokens handed to clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSection {
    /// PKCS#8 PEM file of the ES256 (P-256) key that signs tokens and webhooks.
    /// Empty: generate one in `<data_dir>/keys/token-signing.pem`.
    pub signing_key: PathBuf,
    /// PKCS#8 PEM files of earlier signing keys: tokens they signed still verify (until they
    /// expire) and their public halves stay in the JWKS, but they sign nothing new.
    pub retired_signing_keys: Vec<PathBuf>,
    /// Lifetime of a token when the request names none.
    pub default_lifetime_minutes: Bounded<60, 1440>,
    /// Clock leeway when checking `exp` and `iat`.
    pub verify_leeway_seconds: Bounded<0, 300>,
}

impl Default for TokenSection {
    fn default() -> Self {
        Self {
            signing_key: PathBuf::new(),
            retired_signing_keys: Vec::new(),
            default_lifetime_minutes: Bounded::new_const(1440),
            verify_leeway_seconds: Bounded::new_const(30),
        }
    }
}

/// `[quic]`: the QUIC endpoint for native clients and the load tester.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuicSection {
    /// UDP address of the QUIC endpoint (ALPN `switchboard/1`). Port 0 picks a free port.
    pub listen: SocketAddr,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout_seconds: Bounded<1, 600>,
    /// Handshakes in progress on one worker at or above which a new client must first prove its
    /// address with a QUIC Retry (one more round trip), so spoofed Initials cannot make the
    /// server hold handshake state. 0: always.
    pub retry_above_handshakes: Bounded<0, 1_000_000>,
}

impl Default for QuicSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 4433)),
            idle_timeout_seconds: Bounded::new_const(30),
            retry_above_handshakes: Bounded::new_const(64),
        }
    }
}

/// `[webrtc]`: WebRTC media for browsers (one UDP port per media worker, ICE-lite).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebRtcSection {
    /// IP the WebRTC UDP sockets bind to.
    pub listen_ip: std::net::IpAddr,
    /// UDP port of the first media worker; worker `i` uses `port_start + i`. 0 picks free ports.
    pub port_start: Bounded<0, 65_000>,
    /// IPs announced to browsers as ICE host candidates (with each worker's port). Empty: the
    /// `listen_ip` (which then must not be unspecified).
    pub public_ips: Vec<std::net::IpAddr>,
    /// Starting bandwidth estimate toward a browser, kbit/s (the TWCC estimator adapts it).
    pub initial_bitrate_kbps: Bounded<50, 100_000>,
    /// Seconds a browser whose ICE consent lapsed (no binding request for 15 s) keeps its place
    /// and peer connection, for its checks to resume or for an ICE restart. 0: it leaves at once.
    pub reconnect_grace_seconds: Bounded<0, 600>,
}

impl Default for WebRtcSection {
    fn default() -> Self {
        Self {
            listen_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            port_start: Bounded::new_const(50_000),
            public_ips: Vec::new(),
            initial_bitrate_kbps: Bounded::new_const(1_000),
            reconnect_grace_seconds: Bounded::new_const(20),
        }
    }
}

/// `[rooms]`: the ACS Rooms API (scheduled, invite-only rooms kept in the store).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsSection {
    /// Most participants one room may list; also the most one request may name. Bounds what a
    /// caller can make the server store and send back per room.
    pub max_participants_per_room: Bounded<1, 100_000>,
    /// Rooms or participants per page of `GET /rooms` and `GET /rooms/{id}/participants`; the
    /// rest follow through `nextLink`.
    pub page_size: Bounded<1, 1000>,
}

impl Default for RoomsSection {
    fn default() -> Self {
        Self { max_participants_per_room: Bounded::new_const(1_000), page_size: Bounded::new_const(100) }
    }
}

/// `[meetings]`: Teams-style meetings (`/meetings`, kept in the store) and their lobbies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeetingsSection {
    /// Most attendees one meeting may list (the organizer is not counted). Bounds what a caller
    /// can make the server store and send back per meeting.
    pub max_attendees_per_meeting: Bounded<1, 100_000>,
    /// Longest subject, in characters.
    pub max_subject_chars: Bounded<1, 10_000>,
    /// Meetings per page of `GET /meetings`; the rest follow through `@odata.nextLink`.
    pub page_size: Bounded<1, 1000>,
    /// How long a joiner may wait in a meeting's lobby before it is turned away.
    pub lobby_timeout_seconds: Bounded<1, 86_400>,
    /// Wrong passcodes one client address may try per minute, over all meetings.
    pub wrong_passcodes_per_minute_per_address: Bounded<1, 10_000>,
    /// Wrong passcodes all clients together may try per minute against one meeting: bounds how
    /// fast a distributed guesser can search one meeting's passcodes.
    pub wrong_passcodes_per_minute_per_meeting: Bounded<1, 100_000>,
}

impl Default for MeetingsSection {
    fn default() -> Self {
        Self {
            max_attendees_per_meeting: Bounded::new_const(1_000),
            max_subject_chars: Bounded::new_const(256),
            page_size: Bounded::new_const(100),
            lobby_timeout_seconds: Bounded::new_const(900),
            wrong_passcodes_per_minute_per_address: Bounded::new_const(5),
            wrong_passcodes_per_minute_per_meeting: Bounded::new_const(20),
        }
    }
}

/// `[organization]`: who belongs to the organization that runs this server (meeting lobbies let
/// members, and depending on the meeting guests and federated users, in directly). Decided when
/// a token is issued and carried in it (`org` claim). Entries are checked while the config is
/// read; users listed for another resource are refused at start.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrganizationSection {
    /// Communication users (`8:acs:<resourceId>_<uuid>`) that are members.
    pub members: Vec<ConfiguredUser>,
    /// externalId patterns of members (`*@contoso.com`, `*.contoso.com`, or an exact externalId).
    pub member_domains: Vec<ExternalIdPattern>,
    /// Communication users that are guests of the organization.
    pub guests: Vec<ConfiguredUser>,
    /// externalId patterns of guests.
    pub guest_domains: Vec<ExternalIdPattern>,
    /// externalId patterns of federated (trusted) organizations' users.
    pub federated_domains: Vec<ExternalIdPattern>,
}

impl OrganizationSection {
    /// The lists as `OrgPolicy::new` takes them.
    pub fn lists(&self) -> OrgLists<'_> {
        OrgLists {
            members: &self.members,
            member_domains: &self.member_domains,
            guests: &self.guests,
            guest_domains: &self.guest_domains,
            federated_domains: &self.federated_domains,
        }
    }
}

/// `[webhooks]`: delivery of call-automation events (CloudEvents) to the `callbackUri` an app
/// gave. Deliveries to one call go out one at a time in order; failures are retried with
/// exponential backoff and jitter for `retry_for_seconds`, then dropped, counted and logged.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksSection {
    /// Hosts a `callbackUri` may name: `host`, `host:port`, `*.example.com` (its subdomains, not
    /// itself), IP literals (`127.0.0.1`, `::1`, `[::1]:8080`). Matched by name or literal, never
    /// by resolving. The default allows loopback only, so a fresh install works with an app on
    /// the same machine and cannot be made to POST anywhere else.
    pub allowed_hosts: Vec<HostPattern>,
    /// One delivery attempt (connect, send, response headers) gives up after this long.
    pub request_timeout_ms: Bounded<100, 120_000>,
    /// How long after it was published an event is retried before it is dropped as expired.
    pub retry_for_seconds: Bounded<0, 86_400>,
    /// Wait before the first retry; each further retry doubles it (with jitter).
    pub initial_backoff_ms: Bounded<1, 600_000>,
    /// Longest wait between two attempts (a receiver's `Retry-After` may ask for longer).
    pub max_backoff_ms: Bounded<1, 3_600_000>,
    /// Most events queued for one call (ordering key); more are dropped and counted.
    pub max_queued_per_call: Bounded<1, 1_000_000>,
    /// Most events queued over all calls; bounds the memory webhooks can take.
    pub max_queued_total: Bounded<1, 10_000_000>,
    /// Most delivery requests in flight at once, over all calls.
    pub max_concurrent: Bounded<1, 10_000>,
}

impl Default for WebhooksSection {
    fn default() -> Self {
        Self {
            allowed_hosts: ["localhost", "127.0.0.1", "::1"]
                .into_iter()
                .map(|h| HostPattern::parse(h).expect("the default allow-list entries are valid patterns"))
                .collect(),
            request_timeout_ms: Bounded::new_const(10_000),
            retry_for_seconds: Bounded::new_const(600),
            initial_backoff_ms: Bounded::new_const(500),
            max_backoff_ms: Bounded::new_const(60_000),
            max_queued_per_call: Bounded::new_const(1_000),
            max_queued_total: Bounded::new_const(100_000),
            max_concurrent: Bounded::new_const(64),
        }
    }
}

/// `[call_automation]`: where `play` may take its audio from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallAutomationSection {
    /// Directory of the media files `play` may name by file name or relative path (WAV PCM or
    /// Ogg Opus). Empty: no local files (only URLs on `media_hosts`).
    pub media_dir: PathBuf,
    /// Hosts an http(s) `play` source may name, same patterns as `[webhooks] allowed_hosts`
    /// (matched by name or IP literal, never by resolving). Empty: no URLs.
    pub media_hosts: Vec<HostPattern>,
    /// Largest media file `play` reads (local or fetched).
    pub max_media_bytes: Bounded<1, 1_073_741_824>,
    /// Fetching one media URL (connect, headers and body) gives up after this long.
    pub media_fetch_timeout_ms: Bounded<100, 120_000>,
    /// Apps that take the calls to identities they own: a call to `identity` sends an
    /// `IncomingCall` event to `callback_uri`, and the app may `answer`, `reject` or `redirect`.
    pub incoming_call_subscriptions: Vec<IncomingCallSubscription>,
}

/// One `[[call_automation.incoming_call_subscriptions]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingCallSubscription {
    /// The raw ID of a communication user of this server (`8:acs:...`).
    pub identity: String,
    /// Where its `IncomingCall` events go (checked against `[webhooks] allowed_hosts`).
    pub callback_uri: String,
    /// `"CloudEvents"` (the default) or `"EventGrid"`: how `IncomingCall` events are framed.
    /// ACS delivers them through an Event Grid subscription; apps written for its Event Grid
    /// schema (`EventGridEvent.from_dict`, `eventType`) want `"EventGrid"`.
    #[serde(default)]
    pub event_schema: crate::webhooks::EventSchema,
}

impl Default for CallAutomationSection {
    fn default() -> Self {
        Self {
            media_dir: PathBuf::new(),
            media_hosts: Vec::new(),
            max_media_bytes: Bounded::new_const(32 * 1024 * 1024),
            media_fetch_timeout_ms: Bounded::new_const(10_000),
            incoming_call_subscriptions: Vec::new(),
        }
    }
}

/// `[dev]`: conveniences for development. Never enable them on a server others can reach.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DevSection {
    /// Serve `POST /dev/token`, which creates an identity and a `voip` token for anyone who
    /// asks (the demo page's "get a token" button).
    pub token_endpoint: bool,
}

/// `[media]`: the media workers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaSection {
    /// Number of media workers; 0 means one per CPU core.
    pub workers: Bounded<0, 255>,
    /// Most sessions one worker accepts, QUIC and WebSocket together (a WebSocket session takes
    /// the next worker with room).
    pub max_sessions_per_worker: Bounded<1, 1_000_000>,
    /// Commands (state changes from signaling) queued per worker. When the queue is full a
    /// change waits for room; it is never dropped.
    pub command_queue: Bounded<1, 1_000_000>,
}

impl Default for MediaSection {
    fn default() -> Self {
        Self {
            workers: Bounded::new_const(0),
            max_sessions_per_worker: Bounded::new_const(20_000),
            command_queue: Bounded::new_const(4096),
        }
    }
}

/// `[calls]`: calling a user (1:1 calls and small group rings).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallsSection {
    /// How long a call rings before it ends with `NoAnswer`.
    pub ring_timeout_seconds: Bounded<1, 600>,
    /// Most identities one call may ring at once.
    pub max_targets: Bounded<1, 100>,
}

impl Default for CallsSection {
    fn default() -> Self {
        Self { ring_timeout_seconds: Bounded::new_const(30), max_targets: Bounded::new_const(10) }
    }
}

/// `[limits]`: protection against overload and abuse.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Most live rooms (calls, rooms and meetings together).
    pub max_rooms: Bounded<1, 10_000_000>,
    pub max_participants_per_room: Bounded<1, 100_000>,
    /// Most participants publishing at once in one room.
    pub max_publishers_per_room: Bounded<1, 100_000>,
    pub max_tracks_per_participant: Bounded<1, 64>,
    /// Largest signaling message, bytes.
    pub max_message_bytes: Bounded<1024, 1_048_576>,
    /// Join attempts per second from one client IP address.
    pub joins_per_second_per_address: Bounded<1, 100_000>,
    /// Signaling messages per second one session may send (bursts of twice this are allowed).
    pub messages_per_second_per_session: Bounded<1, 100_000>,
    /// Seconds a new signaling session (QUIC or WebSocket) has to `register` or `join`; then it
    /// is closed. Pings do not extend it.
    pub register_timeout_seconds: Bounded<1, 300>,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_rooms: Bounded::new_const(100_000),
            max_participants_per_room: Bounded::new_const(1_000),
            max_publishers_per_room: Bounded::new_const(100),
            max_tracks_per_participant: Bounded::new_const(8),
            max_message_bytes: Bounded::new_const(65_536),
            joins_per_second_per_address: Bounded::new_const(50),
            messages_per_second_per_session: Bounded::new_const(200),
            register_timeout_seconds: Bounded::new_const(10),
        }
    }
}
