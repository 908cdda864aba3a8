//! The server's own leg of a call connection: a `switchboard::client` QUIC client of this
//! server's own listener, on loopback, trusting its CA, registered with a token the server issues
//! itself. It joins rooms, is rung and answers through the same admission path as every client,
//! and can publish and subscribe to media like one.

use crate::auth::{Scopes, TokenIssuer, TokenLifetime};
use crate::client::{Client, ClientError, ClientOptions};
use crate::identity::{IdentityDirectory, IdentityId};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The `externalId` of the identity call connections use as their source (one per server, kept
/// across restarts by the identity store's externalId lookup).
pub const SERVICE_EXTERNAL_ID: &str = "switchboard:call-automation";

/// How long a leg's token lives; the leg registers again with a fresh one at half of it.
pub const LEG_TOKEN_MINUTES: i64 = 1440;

/// Why the leg could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LegError {
    #[error("cannot issue the leg's token: {0}")]
    Token(String),
    #[error("the leg's client failed: {0}")]
    Client(#[from] ClientError),
    #[error("the identity store failed: {0}")]
    Store(String),
}

/// Connects legs to this server.
pub struct LegConnector {
    quic: SocketAddr,
    ca_pem: Vec<u8>,
    server_name: String,
    issuer: Arc<TokenIssuer>,
    directory: Arc<IdentityDirectory>,
    service: OnceCell<IdentityId>,
}

impl LegConnector {
    /// `quic`: the server's QUIC address (an unspecified address is reached on loopback);
    /// `server_name`: the name its certificate carries.
    pub fn new(
        quic: SocketAddr,
        ca_pem: Vec<u8>,
        server_name: String,
        issuer: Arc<TokenIssuer>,
        directory: Arc<IdentityDirectory>,
    ) -> Self {
        let ip = match quic.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Self {
            quic: SocketAddr::new(ip, quic.port()),
            ca_pem,
            server_name,
            issuer,
            directory,
            service: OnceCell::new(),
        }
    }

    /// The identity of the call automation service itself (created on first use).
    pub async fn service_identity(&self) -> Result<IdentityId, LegError> {
        let directory = self.directory.clone();
        self.service
            .get_or_try_init(|| async move {
                let record = tokio::task::spawn_blocking(move || directory.create(Some(SERVICE_EXTERNAL_ID), now_ms()))
                    .await
                    .map_err(|e| LegError::Store(e.to_string()))?
                    .map_err(|e| LegError::Store(e.to_string()))?
                    .0;
                Ok(IdentityId(record.id))
            })
            .await
            .copied()
    }

    /// A fresh `voip` token for `identity`.
    pub async fn token(&self, identity: IdentityId) -> Result<String, LegError> {
        let scopes = Scopes::parse(["voip"]).expect("voip is a scope name");
        let lifetime = TokenLifetime::from_minutes(LEG_TOKEN_MINUTES).expect("LEG_TOKEN_MINUTES is a valid lifetime");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        // Issuing notes the issue in the store: off the async threads.
        let issuer = self.issuer.clone();
        let issued = tokio::task::spawn_blocking(move || issuer.issue(identity, scopes, lifetime, now))
            .await
            .map_err(|e| LegError::Token(e.to_string()))?
            .map_err(|e| LegError::Token(e.to_string()))?;
        Ok(issued.token)
    }

    /// Connect a leg and register it as a device of `identity` shown as `display_name`.
    pub async fn connect(&self, identity: IdentityId, display_name: Option<&str>) -> Result<Client, LegError> {
        let token = self.token(identity).await?;
        let mut options = ClientOptions::new(self.quic, self.ca_pem.clone());
        options.server_name.clone_from(&self.server_name);
        options.request_timeout = Duration::from_secs(10);
        let client = Client::connect(options).await?;
        if let Err(e) = client.register(&token, display_name).await {
            client.close().await;
            return Err(e.into());
        }
        Ok(client)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
