//! Helpers for media tests: a server with identities and tokens, and QUIC clients.
#![allow(dead_code)]

use super::{Api, test_config};
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};
use switchboard::client::{Client, ClientEvent, ClientOptions};
use switchboard::server::{self, RunningServer};
use switchboard::signaling::messages::ServerMessage;

/// A running server and an API client for it.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub server: RunningServer,
    pub api: Api,
    pub ca: Vec<u8>,
}

impl TestServer {
    /// Start a server with `workers` media workers plus any extra env overrides.
    pub async fn start(workers: u32) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = test_config(dir.path());
        config.quic.listen = "127.0.0.1:0".parse().expect("addr");
        config.media.workers = switchboard::config::Bounded::try_from(i64::from(workers)).expect("valid worker count");
        let server = server::start(config).await.expect("server starts");
        let ca = std::fs::read(&server.trust_cert).expect("CA");
        let api = Api::new(&server.connection_string(), &ca);
        Self { dir, server, api, ca }
    }

    /// Create an identity and return (raw id, token with `scopes`).
    pub async fn identity(&self, scopes: &[&str]) -> (String, String) {
        let (status, body) = self
            .api
            .call(Method::POST, "/identities?api-version=2023-10-01", Some(json!({"createTokenWithScopes": scopes})))
            .await;
        assert_eq!(status, 201, "{body}");
        (
            body["identity"]["id"].as_str().expect("id").to_owned(),
            body["accessToken"]["token"].as_str().expect("token").to_owned(),
        )
    }

    pub async fn client(&self) -> Client {
        Client::connect(ClientOptions::new(self.server.quic_addr, self.ca.clone())).await.expect("client connects")
    }

    /// A client joined to `group` with a fresh `voip` identity.
    pub async fn joined(&self, group: &str) -> (Client, String) {
        let (raw, token) = self.identity(&["voip"]).await;
        let client = self.client().await;
        client.join_group(&token, group).await.expect("join");
        (client, raw)
    }

    /// The value of a metric line (exact label set) in `/metrics`.
    pub async fn metric(&self, name_and_labels: &str) -> f64 {
        let (_, text) = self.api.get_public("/metrics").await;
        text.lines()
            .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    pub async fn stop(self) {
        self.server.stop().await;
    }
}

pub fn group() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_micros() as u64
}

/// Wait for a signaling event matching `pred`, returning it; other events are collected into
/// `skipped`.
pub async fn wait_signal(
    client: &mut Client,
    limit: Duration,
    mut pred: impl FnMut(&ServerMessage) -> bool,
) -> Option<ServerMessage> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.next_event_timeout(left).await? {
            ClientEvent::Signal(m) if pred(&m) => return Some(m),
            _ => {}
        }
    }
}
