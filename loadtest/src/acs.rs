//! A small ACS-signing HTTPS client for the management API.

use anyhow::Context as _;
use std::time::SystemTime;
use switchboard::auth::hmac::{ConnectionString, sign_request};

/// Signs every request with the connection string's access key.
#[derive(Clone)]
pub struct AcsClient {
    http: reqwest::Client,
    cs: std::sync::Arc<ConnectionString>,
}

impl AcsClient {
    /// `ca_pem`: the certificate to trust (the server's generated CA on a default install).
    pub fn new(connection_string: &str, ca_pem: &[u8]) -> anyhow::Result<Self> {
        let cs: ConnectionString = connection_string.parse()?;
        let tls = switchboard::tls::client_config(ca_pem, &[b"http/1.1"]).context("CA certificate")?;
        let http = reqwest::Client::builder().use_preconfigured_tls(tls).build()?;
        Ok(Self { http, cs: std::sync::Arc::new(cs) })
    }

    pub fn endpoint(&self) -> &str {
        &self.cs.endpoint
    }

    /// GET a public path (with a bearer token if given) as text.
    pub async fn get_text(&self, path: &str, bearer: Option<&str>) -> anyhow::Result<String> {
        let mut req = self.http.get(format!("{}{}", self.cs.endpoint, path));
        if let Some(token) = bearer {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let resp = req.send().await?;
        anyhow::ensure!(resp.status().is_success(), "GET {path}: {}", resp.status());
        Ok(resp.text().await?)
    }

    /// POST a JSON body; returns the status and the parsed body (`Null` when empty).
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<(u16, serde_json::Value)> {
        let bytes = body.to_string().into_bytes();
        let mut req = self.http.post(format!("{}{}", self.cs.endpoint, path));
        for (name, value) in sign_request("POST", path, &self.cs.host, &bytes, &self.cs.key, SystemTime::now()) {
            req = req.header(name, value);
        }
        let resp = req.header("content-type", "application/json").body(bytes).send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)))
    }
}
