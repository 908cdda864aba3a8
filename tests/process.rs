//! The `switchboard` binary as operators run it: persistence across `kill -9`, graceful stop,
//! configuration errors (exit code 2) and the CLI commands.

mod common;

use common::{ServerProcess, encode_id, test_config};
use reqwest::Method;
use serde_json::json;
use std::process::{Command, Output};
use switchboard::auth::{Action, TokenError};

const V: &str = "api-version=2023-10-01";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

fn switchboard(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(args).current_dir(dir).env_remove("RUST_LOG").env("SWITCHBOARD__SERVER__DATA_DIR", dir.join("data"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run switchboard")
}

#[tokio::test]
async fn identities_and_revocations_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = ServerProcess::start(dir.path(), &[]);
    let api = server.api();
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/identities?{V}"),
            Some(json!({"externalId": "durable", "createTokenWithScopes": ["voip"]})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let raw = body["identity"]["id"].as_str().expect("id").to_owned();
    let revoked_token = body["accessToken"]["token"].as_str().expect("token").to_owned();
    let path = format!("/identities/{}/:revokeAccessTokens?{V}", encode_id(&raw));
    assert_eq!(api.call(Method::POST, &path, None).await.0, 204);
    let path = format!("/identities/{}/:issueAccessToken?{V}", encode_id(&raw));
    let (_, body) = api.call(Method::POST, &path, Some(json!({"scopes": ["voip"]}))).await;
    let live_token = body["token"].as_str().expect("token").to_owned();
    let (_, body) = api.call(Method::POST, &format!("/identities?{V}"), None).await;
    let deleted = body["identity"]["id"].as_str().expect("id").to_owned();
    assert_eq!(api.call(Method::DELETE, &format!("/identities/{}?{V}", encode_id(&deleted)), None).await.0, 204);
    server.kill9();

    // The process comes back with the same identities and the same keys.
    let server = ServerProcess::start(dir.path(), &[]);
    let api = server.api();
    let (status, body) = api.call(Method::GET, &format!("/identities/{}?{V}", encode_id(&raw)), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        api.call(Method::POST, &format!("/identities?{V}"), Some(json!({"externalId": "durable"}))).await;
    assert_eq!(status, 200, "known externalId returns the existing identity: {body}");
    assert_eq!(body["identity"]["id"], raw.as_str());
    assert_eq!(api.call(Method::GET, &format!("/identities/{}?{V}", encode_id(&deleted)), None).await.0, 404);
    let status = server.terminate();
    assert!(status.success(), "graceful stop exits 0, got {status:?}");

    // And the revocation generation persisted too.
    let running = switchboard::server::start(test_config(dir.path())).await.expect("start on same data");
    let verifier = running.token_verifier();
    assert_eq!(verifier.verify(&revoked_token, Action::JoinCall, now()), Err(TokenError::Revoked));
    assert!(verifier.verify(&live_token, Action::JoinCall, now()).is_ok());
    running.stop().await;
}

/// A free loopback UDP port (for a QUIC listener that must keep its port across a restart).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").expect("udp").local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_clients_learn_at_once_that_their_call_is_gone_and_rejoin() {
    use common::webrtc::Signal;
    use switchboard::client::{Client, ClientEvent, ClientOptions};
    use switchboard::signaling::messages::{ClientMessage, JoinAt, ServerMessage};

    let dir = tempfile::tempdir().expect("tmp");
    let quic: std::net::SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().expect("addr");
    let env = [("SWITCHBOARD__QUIC__LISTEN", quic.to_string())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = ServerProcess::start(dir.path(), &env);
    let api = server.api();
    let ca = std::fs::read(&server.ca_path).expect("CA");
    let (_, body) =
        api.call(Method::POST, &format!("/identities?{V}"), Some(json!({"createTokenWithScopes": ["voip"]}))).await;
    let token = body["accessToken"]["token"].as_str().expect("token").to_owned();
    let group = uuid::Uuid::new_v4().to_string();
    let mut quic_client = Client::connect(ClientOptions::new(quic, ca.clone())).await.expect("QUIC connects");
    quic_client.join_group(&token, &group).await.expect("joined over QUIC");
    let mut ws = Signal::connect(&server.endpoint, &ca).await;
    let r = ws
        .request(ClientMessage::Join { token: Some(token.clone()), at: JoinAt::group(&group), display_name: None })
        .await;
    assert!(matches!(r, ServerMessage::Joined { .. }), "{r:?}");

    server.kill9();
    // The WebSocket's TCP connection died with the process.
    assert!(ws.closed(std::time::Duration::from_secs(5)).await, "the WebSocket client sees its socket close");
    // The QUIC client learns it from the restarted server: its next packet (a keepalive within
    // 5 s) is answered with a stateless reset made with the same key, long before the 30 s idle
    // timeout.
    let server = ServerProcess::start(dir.path(), &env);
    let restarted = std::time::Instant::now();
    let closed = loop {
        match quic_client.next_event_timeout(std::time::Duration::from_secs(12)).await {
            Some(ClientEvent::Closed { reason }) => break Some(reason),
            Some(_) => continue,
            None => break None,
        }
    };
    let reason = closed.expect("the QUIC client learns its connection is gone within 12 s of the restart");
    assert!(reason.contains("reset"), "closed by a stateless reset: {reason}");
    assert!(restarted.elapsed() < std::time::Duration::from_secs(12));

    // Both rejoin the same group call with the same token.
    let again = Client::connect(ClientOptions::new(quic, ca.clone())).await.expect("QUIC reconnects");
    again.join_group(&token, &group).await.expect("rejoined over QUIC");
    let mut ws = Signal::connect(&server.endpoint, &ca).await;
    let r = ws.request(ClientMessage::Join { token: Some(token), at: JoinAt::group(&group), display_name: None }).await;
    assert!(matches!(r, ServerMessage::Joined { .. }), "{r:?}");
    drop(server);
}

#[test]
fn sigint_also_stops_gracefully() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = ServerProcess::start(dir.path(), &[]);
    let mut server = server;
    common::signal(server.pid(), "INT");
    let status =
        common::wait_timeout(server.child_mut(), std::time::Duration::from_secs(30)).expect("exits after SIGINT");
    assert!(status.success(), "{status:?}");
}

fn assert_config_error(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)], key: &str) {
    let out = switchboard(dir, args, env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(key), "message names {key}: {stderr}");
}

#[test]
fn bad_config_stops_with_one_line_naming_the_key_and_exit_2() {
    let dir = tempfile::tempdir().expect("tmp");
    let cases: &[(&str, &str)] = &[
        ("[http]\nlisten_addr = \"127.0.0.1:1\"\n", "http.listen_addr"),
        ("[htp]\nlisten = \"127.0.0.1:1\"\n", "htp"),
        ("[http]\nlisten = 8443\n", "http.listen"),
        ("[http]\nlisten = \"not an address\"\n", "http.listen"),
        ("[tokens]\ndefault_lifetime_minutes = 30\n", "tokens.default_lifetime_minutes"),
        ("[auth]\nmax_clock_skew_seconds = 0\n", "auth.max_clock_skew_seconds"),
        ("[auth]\naccess_keys = \"abc\"\n", "auth.access_keys"),
        ("[server]\nlog = \"info,,=\"\n", "server.log"),
        ("[http]\npublic_url = \"ftp://x\"\n", "http.public_url"),
        ("[organization]\nmember_domains = [\"contoso*\"]\n", "organization.member_domains"),
        ("[organization]\nguests = [\"8:acs:nope\"]\n", "organization.guests"),
        ("[meetings]\nlobby_timeout_seconds = 0\n", "meetings.lobby_timeout_seconds"),
        ("[http\nlisten=1", "config.toml"),
    ];
    for (text, key) in cases {
        std::fs::write(dir.path().join("config.toml"), text).expect("write config");
        assert_config_error(dir.path(), &["check-config", "--config", "config.toml"], &[], key);
        assert_config_error(dir.path(), &["serve", "--config", "config.toml"], &[], key);
    }
    std::fs::write(dir.path().join("config.toml"), "").expect("write config");
    assert_config_error(
        dir.path(),
        &["check-config", "--config", "config.toml"],
        &[("SWITCHBOARD__HTTP__MAX_BODY_BYTES", "5")],
        "SWITCHBOARD__HTTP__MAX_BODY_BYTES",
    );
    assert_config_error(dir.path(), &["check-config", "--config", "missing.toml"], &[], "missing.toml");
    // A member of another resource: caught at load with a configured resource ID, else at start
    // (the generated resource ID is known only then), with the same exit code.
    let foreign = format!("[\"8:acs:2b2c3d4e-0000-4000-8000-000000000001_{}\"]", uuid::Uuid::new_v4());
    let env = [("SWITCHBOARD__ORGANIZATION__MEMBERS", foreign.as_str())];
    let with_resource = [env[0], ("SWITCHBOARD__SERVER__RESOURCE_ID", "1b2c3d4e-0000-4000-8000-000000000001")];
    assert_config_error(
        dir.path(),
        &["check-config", "--config", "config.toml"],
        &with_resource,
        "organization.members",
    );
    let quiet = [env[0], ("SWITCHBOARD__SERVER__LOG", "error")];
    assert_config_error(dir.path(), &["serve", "--config", "config.toml"], &quiet, "organization.members");
    let ok = switchboard(dir.path(), &["check-config", "--config", "config.toml"], &[]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}

#[test]
fn shipped_config_toml_is_valid_and_matches_the_defaults() {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let text = std::fs::read_to_string(&shipped).expect("config.toml");
    let base = std::path::Path::new("/base");
    let parsed = switchboard::config::load_from_str(&text, [], base).expect("shipped config is valid");
    let defaults = switchboard::config::load_from_str("", [], base).expect("defaults are valid");
    assert_eq!(format!("{parsed:?}"), format!("{defaults:?}"), "config.toml documents exactly the defaults");
}

#[tokio::test]
async fn cli_creates_identities_and_issues_tokens_on_the_data_dir() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = switchboard(dir.path(), &["identity", "create", "--external-id", "ops-user"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let raw = String::from_utf8(out.stdout).expect("utf8").trim().to_owned();
    assert!(raw.starts_with("8:acs:"), "{raw}");
    let again = switchboard(dir.path(), &["identity", "create", "--external-id", "ops-user"], &[]);
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), raw, "idempotent by external ID");

    // The CLI decides organization membership as the server does: this externalId is a member.
    let out = switchboard(
        dir.path(),
        &["token", "issue", "--identity", &raw, "--scopes", "voip.join,chat", "--minutes", "60"],
        &[("SWITCHBOARD__ORGANIZATION__MEMBER_DOMAINS", "[\"ops-user\"]")],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).expect("utf8").trim().to_owned();
    let bad =
        switchboard(dir.path(), &["token", "issue", "--identity", &raw, "--scopes", "voip", "--minutes", "10"], &[]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("60"), "names the allowed range");
    let bad = switchboard(dir.path(), &["token", "issue", "--identity", &raw, "--scopes", "video"], &[]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("video"));

    let out = switchboard(dir.path(), &["connection-string"], &[]);
    let cs = String::from_utf8(out.stdout).expect("utf8");
    assert!(cs.starts_with("endpoint=https://127.0.0.1:8443/;accesskey="), "{cs}");
    let parsed: switchboard::auth::hmac::ConnectionString = cs.trim().parse().expect("parses");
    assert_eq!(parsed.key.len(), 64);

    let out = switchboard(dir.path(), &["version"], &[]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("switchboard "));

    // A server on the same data directory accepts the CLI's token with its scopes.
    let running = switchboard::server::start(test_config(dir.path())).await.expect("start");
    let verifier = running.token_verifier();
    let v = verifier.verify(&token, Action::JoinCall, now()).expect("CLI token verifies");
    assert_eq!(v.raw_id, raw);
    assert_eq!(v.org, switchboard::organization::OrgStatus::Member, "the CLI's token carries the org claim");
    assert_eq!(verifier.verify(&token, Action::StartCall, now()), Err(TokenError::InsufficientScope));
    running.stop().await;
}
