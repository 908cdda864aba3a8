//! A few seconds of `loadtest media` against a real server on loopback: everyone joins, nothing
//! is lost at this load, latency is recorded, and the server's CPU per forwarded packet is
//! above zero and below a generous bound (a debug build on a busy CI machine).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `switchboard serve` as a child process (the process CPU it reports is its own), with its
/// data in `dir`: (child, connection string, CA path, QUIC address).
fn start_server(dir: &Path) -> (Child, String, PathBuf, String) {
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
    (child, connection_string.trim().to_owned(), dir.join(ca), quic)
}

#[test]
fn a_short_video_meeting_loses_nothing_and_measures_everything() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut server, connection_string, ca, quic) = start_server(dir.path());
    let json = dir.path().join("out.json");
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["media", "--connection-string", &connection_string, "--ca-cert"])
        .arg(&ca)
        .args(["--quic", &quic, "--scenario", "video-meeting", "--rooms", "1", "--publishers", "3"])
        .args(["--duration", "4s", "--json"])
        .arg(&json)
        .output()
        .expect("loadtest runs");
    let _ = server.kill();
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadtest failed:\n{stdout}\n{stderr}");
    println!("{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON report")).expect("JSON");
    assert_eq!(report["joins"], 3);
    assert_eq!(report["failed_participants"], 0);
    assert!(report["packets_received"].as_u64().is_some_and(|n| n > 500), "{report}");
    assert_eq!(report["packets_lost"], 0, "no loss on loopback at this load: {report}");
    assert!(report["latency_ms"]["samples"].as_u64().is_some_and(|n| n > 500), "{report}");
    assert!(report["latency_ms"]["p99"].as_f64().is_some_and(|ms| ms > 0.0), "{report}");
    let us = report["server_us_per_forwarded_packet"].as_f64().expect("CPU per packet");
    assert!(us > 0.0 && us < 5_000.0, "{us} µs of server CPU per forwarded packet");
    if cfg!(target_os = "linux") {
        assert!(report["floor_ratio"].as_f64().is_some_and(|r| r > 0.0), "{report}");
    }
}
