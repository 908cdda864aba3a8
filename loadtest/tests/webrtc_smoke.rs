//! A few seconds of `loadtest media --carrier webrtc` against a real server on loopback: a
//! livestream (one publisher, a few subscribers) over WebRTC, signaled over `wss://.../signal`.
//! Everyone joins and connects, nothing is lost, latency is recorded, and the server's CPU per
//! forwarded packet is above zero and below a generous bound (a debug build on a busy machine).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const SUBSCRIBERS: u64 = 4;

/// `switchboard serve` as a child process, with its data in `dir`: (child, connection string, CA
/// path). As in `media_smoke.rs`; the WebRTC sockets listen on, and announce, 127.0.0.1
/// (`[webrtc] listen_ip`, with no `public_ips`).
fn start_server(dir: &Path) -> (Child, String, PathBuf) {
    // The workspace builds the server next to this package's binary.
    let bin = Path::new(env!("CARGO_BIN_EXE_loadtest")).with_file_name("switchboard");
    assert!(bin.exists(), "{} is missing: cargo build --bin switchboard", bin.display());
    let mut child = Command::new(bin)
        .arg("serve")
        .current_dir(dir)
        .env("SWITCHBOARD__SERVER__DATA_DIR", dir.join("data"))
        .env("SWITCHBOARD__HTTP__LISTEN", "127.0.0.1:0")
        .env("SWITCHBOARD__QUIC__LISTEN", "127.0.0.1:0")
        .env("SWITCHBOARD__WEBRTC__LISTEN_IP", "127.0.0.1")
        .env("SWITCHBOARD__WEBRTC__PORT_START", "0")
        // Start the bandwidth estimate toward each subscriber above the video's rate, so the
        // estimator's first seconds (from the default 1 Mbit/s) do not switch layers down and up
        // in a run this short. With the default, about one such run in ten on a busy 2-core
        // machine had one subscription miss 4-6 frames of the top layer, and the sequence
        // numbers were already missing on the wire: the server skipped them, not this client.
        .env("SWITCHBOARD__WEBRTC__INITIAL_BITRATE_KBPS", "10000")
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
    let ca = line.split("(trust ").nth(1).and_then(|r| r.split(';').next()).expect("the CA path");
    let connection_string = std::fs::read_to_string(dir.join("data/connection-string")).expect("connection string");
    (child, connection_string.trim().to_owned(), dir.join(ca))
}

#[test]
fn a_short_webrtc_livestream_loses_nothing_and_measures_everything() {
    let dir = tempfile::tempdir().expect("tmp");
    let (mut server, connection_string, ca) = start_server(dir.path());
    let json = dir.path().join("out.json");
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["media", "--carrier", "webrtc", "--connection-string", &connection_string, "--ca-cert"])
        .arg(&ca)
        .args(["--scenario", "livestream", "--subscribers", &SUBSCRIBERS.to_string()])
        .args(["--duration", "4s", "--settle", "1s", "--json"])
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
    assert_eq!(report["carrier"], "webrtc", "{report}");
    assert_eq!(report["joins"], 1 + SUBSCRIBERS);
    assert_eq!(report["failed_participants"], 0);
    // Each subscriber gets 50 audio packets a second and at least the lowest video layer.
    assert!(report["packets_received"].as_u64().is_some_and(|n| n > 500), "{report}");
    assert_eq!(report["packets_lost"], 0, "no loss on loopback at this load: {report}");
    assert!(report["latency_ms"]["samples"].as_u64().is_some_and(|n| n > 500), "{report}");
    assert!(report["latency_ms"]["p99"].as_f64().is_some_and(|ms| ms > 0.0), "{report}");
    assert_eq!(report["sfu"], "switchboard");
    // The steady window: every subscriber gets audio and video, and the video's layer is known.
    assert!(report["window_seconds"].as_f64().is_some_and(|s| s > 0.5), "{report}");
    assert!(report["subscriber_receive_pkt_per_s"].as_f64().is_some_and(|r| r > 50.0), "{report}");
    assert!(report["subscriber_receive_kbps"].as_f64().is_some_and(|r| r > 0.0), "{report}");
    let layers: u64 =
        report["received_video_layers"].as_array().expect("layers").iter().filter_map(|n| n.as_u64()).sum();
    assert!(layers > 0, "{report}");
    assert!(report["subscriber_resolution"].is_string(), "{report}");
    let us = report["server_us_per_forwarded_packet"].as_f64().expect("CPU per packet");
    assert!(us > 0.0 && us < 5_000.0, "{us} µs of server CPU per forwarded packet");
}
