//! `switchboard serve` as a child process for the load tester's smoke runs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Server {
    pub child: Child,
    pub connection_string: String,
    pub ca: PathBuf,
    /// (Each test crate compiles this module, and the WebRTC run does not use QUIC.)
    #[allow(dead_code)]
    pub quic: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server with its data in `dir`, listening on ephemeral loopback ports, with `env` added to
/// its configuration (`SWITCHBOARD__...` variables).
pub fn start_server(dir: &Path, env: &[(&str, &str)]) -> Server {
    // The workspace builds the server next to this package's binary.
    let bin = Path::new(env!("CARGO_BIN_EXE_loadtest")).with_file_name("switchboard");
    assert!(bin.exists(), "{} is missing: cargo build --bin switchboard", bin.display());
    let mut child = Command::new(bin)
        .arg("serve")
        .current_dir(dir)
        .env("SWITCHBOARD__SERVER__DATA_DIR", dir.join("data"))
        .env("SWITCHBOARD__HTTP__LISTEN", "127.0.0.1:0")
        .env("SWITCHBOARD__QUIC__LISTEN", "127.0.0.1:0")
        .env("SWITCHBOARD__WEBRTC__PORT_START", "0")
        .env("SWITCHBOARD__SERVER__SHUTDOWN_GRACE_SECONDS", "1")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("switchboard ready"))
        .expect("the server's ready line");
    let quic = line.split("quic=").nth(1).and_then(|r| r.split_whitespace().next()).expect("a QUIC address").to_owned();
    let ca = line.split("(trust ").nth(1).and_then(|r| r.split(';').next()).expect("the CA path");
    let connection_string = std::fs::read_to_string(dir.join("data/connection-string")).expect("connection string");
    Server { child, connection_string: connection_string.trim().to_owned(), ca: dir.join(ca), quic }
}
