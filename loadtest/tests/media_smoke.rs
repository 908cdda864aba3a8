//! A few seconds of `loadtest media` against a real server on loopback: everyone joins, nothing
//! is lost at this load, latency is recorded, and the server's CPU per forwarded packet is
//! above zero and below a generous bound (a debug build on a busy CI machine).

mod common;

use std::process::Command;

#[test]
fn a_short_video_meeting_loses_nothing_and_measures_everything() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = common::start_server(dir.path(), &[]);
    let (connection_string, ca, quic) = (&server.connection_string, &server.ca, &server.quic);
    let json = dir.path().join("out.json");
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["media", "--connection-string", connection_string, "--ca-cert"])
        .arg(ca)
        .args(["--quic", quic, "--scenario", "video-meeting", "--rooms", "1", "--publishers", "3"])
        .args(["--duration", "4s", "--json"])
        .arg(&json)
        .output()
        .expect("loadtest runs");
    drop(server);
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
