//! Helpers shared by the integration tests: a server started in-process or as a real
//! `switchboard` process on an ephemeral loopback port, and an ACS-signing HTTPS client.
#![allow(dead_code)] // each test binary uses a different subset

pub mod automation;
pub mod media;
pub mod relay;
pub mod webrtc;

use reqwest::Method;
use serde_json::Value;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};
use switchboard::auth::hmac::{ConnectionString, sign_request};
use switchboard::config::{self, Config};

/// Config for a test server in `dir`: loopback, port 0, nothing else changed.
pub fn test_config(dir: &Path) -> Config {
    let env = [
        ("SWITCHBOARD__SERVER__DATA_DIR".to_owned(), dir.join("data").display().to_string()),
        ("SWITCHBOARD__HTTP__LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("SWITCHBOARD__QUIC__LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
        ("SWITCHBOARD__WEBRTC__PORT_START".to_owned(), "0".to_owned()),
        ("SWITCHBOARD__SERVER__SHUTDOWN_GRACE_SECONDS".to_owned(), "1".to_owned()),
    ];
    config::load_from_str("", env, dir).expect("test config is valid")
}

/// A `switchboard serve` child process.
pub struct ServerProcess {
    child: Child,
    pub dir: PathBuf,
    pub endpoint: String,
    pub ca_path: PathBuf,
    pub connection_string: String,
}

impl ServerProcess {
    /// Start the binary with its data in `dir` and wait for its ready line.
    pub fn start(dir: &Path, extra_env: &[(&str, &str)]) -> Self {
        let log = std::fs::File::create(dir.join("server.log")).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.arg("serve")
            .current_dir(dir)
            .env("SWITCHBOARD__SERVER__DATA_DIR", dir.join("data"))
            .env("SWITCHBOARD__HTTP__LISTEN", "127.0.0.1:0")
            .env("SWITCHBOARD__QUIC__LISTEN", "127.0.0.1:0")
            .env("SWITCHBOARD__WEBRTC__PORT_START", "0")
            .env("SWITCHBOARD__SERVER__SHUTDOWN_GRACE_SECONDS", "2")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(log);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn switchboard");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if line.starts_with("switchboard ready") {
                    let _ = tx.send(line);
                    break;
                }
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("no ready line; log:\n{}", std::fs::read_to_string(dir.join("server.log")).unwrap_or_default())
        });
        let endpoint = line.split_whitespace().nth(2).expect("ready line names the endpoint").to_owned();
        let ca = line.split("(trust ").nth(1).and_then(|r| r.split(';').next()).expect("ready line names the CA");
        let ca_path = dir.join(ca);
        let connection_string = std::fs::read_to_string(dir.join("data/connection-string"))
            .expect("connection string written")
            .trim()
            .to_owned();
        Self { child, dir: dir.to_path_buf(), endpoint, ca_path, connection_string }
    }

    pub fn api(&self) -> Api {
        Api::new(&self.connection_string, &std::fs::read(&self.ca_path).expect("CA file"))
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: no chance to flush or clean up.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for exit.
    pub fn terminate(mut self) -> ExitStatus {
        signal(self.child.id(), "TERM");
        wait_timeout(&mut self.child, Duration::from_secs(30)).expect("server exits after SIGTERM")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status().expect("kill(1)");
    assert!(status.success());
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// An HTTPS client that signs requests the way the ACS SDKs do.
pub struct Api {
    pub client: reqwest::Client,
    pub cs: ConnectionString,
}

/// What a request should get wrong, to test the signature checks.
#[derive(Clone, Copy, Default)]
pub struct Tamper {
    pub wrong_key: bool,
    pub date_offset_secs: i64,
    pub body_after_signing: Option<&'static [u8]>,
    pub drop_header: Option<&'static str>,
}

impl Api {
    pub fn new(connection_string: &str, ca_pem: &[u8]) -> Self {
        let tls = switchboard::tls::client_config(ca_pem, &[b"h2", b"http/1.1"]).expect("client TLS");
        let client = reqwest::Client::builder().use_preconfigured_tls(tls).build().expect("client");
        Self { client, cs: connection_string.parse().expect("valid connection string") }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_tampered(method, path, body, Tamper::default()).await
    }

    pub async fn call_tampered(&self, method: Method, path: &str, body: Option<Value>, t: Tamper) -> (u16, Value) {
        let (status, _, body) = self.send(method, path, body, t, &[]).await;
        (status, body)
    }

    /// A signed request with extra headers; returns the response headers too.
    pub async fn call_with_headers(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.send(method, path, body, Tamper::default(), headers).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        t: Tamper,
        extra_headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let key = if t.wrong_key { b"0123456789abcdef0123456789abcdef".to_vec() } else { self.cs.key.clone() };
        let at = if t.date_offset_secs >= 0 {
            SystemTime::now() + Duration::from_secs(t.date_offset_secs.unsigned_abs())
        } else {
            SystemTime::now() - Duration::from_secs(t.date_offset_secs.unsigned_abs())
        };
        let headers = sign_request(method.as_str(), path, &self.cs.host, &bytes, &key, at);
        let mut req = self.client.request(method, format!("{}{}", self.cs.endpoint, path));
        for (name, value) in headers {
            if Some(name) != t.drop_header {
                req = req.header(name, value);
            }
        }
        for (name, value) in extra_headers {
            req = req.header(*name, *value);
        }
        let sent = t.body_after_signing.map_or(bytes, <[u8]>::to_vec);
        if !sent.is_empty() {
            req = req.header("content-type", "application/json").body(sent);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// The path and query of an absolute URL on this server (to follow a `nextLink`).
    pub fn path_of(&self, url: &str) -> String {
        let rest =
            url.strip_prefix(&self.cs.endpoint).unwrap_or_else(|| panic!("{url} is not on {}", self.cs.endpoint));
        assert!(rest.starts_with('/'), "{url}");
        rest.to_owned()
    }

    /// An unsigned GET (public endpoints).
    pub async fn get_public(&self, path: &str) -> (u16, String) {
        let resp = self.client.get(format!("{}{}", self.cs.endpoint, path)).send().await.expect("request sent");
        (resp.status().as_u16(), resp.text().await.expect("body"))
    }
}

/// Percent-encode a raw ID for a path segment, as the SDKs do.
pub fn encode_id(raw: &str) -> String {
    raw.replace(':', "%3A")
}

/// A 16-bit PCM mono WAV file of `samples` at `rate`.
pub fn wav(samples: &[f32], rate: u32) -> Vec<u8> {
    let data_len = u32::try_from(samples.len() * 2).expect("small file");
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes());
    }
    out
}
