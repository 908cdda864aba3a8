//! `switchboard backup` while a real server process writes, and `switchboard restore` into a new
//! data directory that a fresh server then serves the same identities, rooms, meetings and
//! revocations from.

mod common;

use common::{Api, ServerProcess, encode_id, test_config};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output};
use switchboard::auth::{Action, TokenError};

const IDENTITIES: &str = "api-version=2023-10-01";
const ROOMS: &str = "api-version=2024-04-15";
const MEETINGS: &str = "api-version=2025-01-01";

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_secs() as i64
}

/// The real binary with its data directory at `data`.
fn switchboard(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .current_dir(data.parent().expect("data dir has a parent"))
        .env_remove("RUST_LOG")
        .env("SWITCHBOARD__SERVER__DATA_DIR", data)
        .output()
        .expect("run switchboard")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "exit {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exits 1 with one line on stderr containing `needle`, and no panic.
fn refused(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(needle), "names {needle}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
}

async fn identity(api: &Api, external_id: &str) -> (String, String) {
    let body = json!({"externalId": external_id, "createTokenWithScopes": ["voip"]});
    let (status, body) = api.call(Method::POST, &format!("/identities?{IDENTITIES}"), Some(body)).await;
    assert_eq!(status, 201, "{body}");
    let raw = body["identity"]["id"].as_str().expect("identity id").to_owned();
    (raw, body["accessToken"]["token"].as_str().expect("token").to_owned())
}

/// Everything the REST API shows of rooms (with participants) and meetings.
async fn visible_state(api: &Api) -> (Value, Vec<Value>, Value) {
    let (status, rooms) = api.call(Method::GET, &format!("/rooms?{ROOMS}"), None).await;
    assert_eq!(status, 200, "{rooms}");
    let mut participants = Vec::new();
    for room in rooms["value"].as_array().expect("rooms value") {
        let path = format!("/rooms/{}/participants?{ROOMS}", room["id"].as_str().expect("room id"));
        let (status, body) = api.call(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{body}");
        participants.push(body);
    }
    let (status, meetings) = api.call(Method::GET, &format!("/meetings?{MEETINGS}"), None).await;
    assert_eq!(status, 200, "{meetings}");
    (rooms, participants, meetings)
}

#[tokio::test]
async fn backup_while_serving_restores_the_same_identities_rooms_meetings_and_revocations() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = ServerProcess::start(dir.path(), &[]);
    let api = server.api();
    let data = dir.path().join("data");

    let (alice, alice_token) = identity(&api, "alice@contoso.com").await;
    let (bob, bob_token) = identity(&api, "bob@contoso.com").await;
    let (_carol, _) = identity(&api, "carol@fabrikam.com").await;
    let path = format!("/identities/{}/:revokeAccessTokens?{IDENTITIES}", encode_id(&bob));
    assert_eq!(api.call(Method::POST, &path, None).await.0, 204);
    let room = json!({"participants": {alice.clone(): {"role": "Presenter"}, bob.clone(): {"role": "Attendee"}}});
    let (status, body) = api.call(Method::POST, &format!("/rooms?{ROOMS}"), Some(room)).await;
    assert_eq!(status, 201, "{body}");
    let meeting = json!({
        "subject": "Quarterly review",
        "participants": {
            "organizer": {"identity": {"user": {"id": alice}}},
            "attendees": [{"identity": {"user": {"id": bob}}, "role": "attendee"}],
        },
        "joinMeetingIdSettings": {"isPasscodeRequired": true},
    });
    let (status, body) = api.call(Method::POST, &format!("/meetings?{MEETINGS}"), Some(meeting)).await;
    assert_eq!(status, 201, "{body}");
    let before = visible_state(&api).await;
    assert_eq!(before.0["value"].as_array().map(Vec::len), Some(1));
    assert_eq!(before.2["value"].as_array().map(Vec::len), Some(1));

    // The last commits are still in the WAL only: a copy of the database file alone would
    // miss them.
    let wal = std::fs::metadata(data.join("switchboard.sqlite-wal")).expect("the live database is in WAL mode");
    assert!(wal.len() > 0, "the WAL holds commits");

    // Back up while the server keeps writing: identities created concurrently land in the backup
    // or not, but the backup is consistent and the command never fails for it.
    let writer_api = server.api();
    let writer = tokio::spawn(async move {
        let mut n = 0;
        for i in 0..40 {
            let body = json!({"externalId": format!("during-{i}")});
            let (status, _) = writer_api.call(Method::POST, &format!("/identities?{IDENTITIES}"), Some(body)).await;
            assert_eq!(status, 201);
            n += 1;
        }
        n
    });
    let file = dir.path().join("switchboard.backup");
    let backup = {
        let data = data.clone();
        let file = file.clone();
        tokio::task::spawn_blocking(move || switchboard(&data, &["backup", file.to_str().expect("utf-8 path")]))
            .await
            .expect("backup ran")
    };
    let printed = ok(&backup);
    assert!(printed.contains("1 rooms and 1 meetings"), "{printed}");
    assert_eq!(writer.await.expect("writer"), 40);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).expect("backup written").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the backup holds the keys");
    }

    // Refusals say what is wrong, in one line, and never panic.
    refused(&switchboard(&data, &["backup", file.to_str().expect("utf-8")]), "already exists");
    let nowhere = dir.path().join("no/such/dir/b");
    refused(&switchboard(&data, &["backup", nowhere.to_str().expect("utf-8")]), "no/such/dir");
    let live = data.join("switchboard.sqlite");
    refused(&switchboard(&data, &["backup", "--force", live.to_str().expect("utf-8")]), "live database");
    let empty = dir.path().join("empty");
    refused(&switchboard(&empty, &["backup", "b"]), "no database");
    refused(&switchboard(&data, &["restore", file.to_str().expect("utf-8")]), "not empty");
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, "this is not a backup").expect("write");
    refused(&switchboard(&dir.path().join("d2"), &["restore", garbage.to_str().expect("utf-8")]), "garbage");
    refused(
        &switchboard(&dir.path().join("d3"), &["restore", live.to_str().expect("utf-8")]),
        "not a Switchboard backup",
    );
    let not_there = dir.path().join("missing.backup");
    refused(&switchboard(&dir.path().join("d4"), &["restore", not_there.to_str().expect("utf-8")]), "no such file");

    // A fresh server on a new data directory restored from the file.
    let restored_dir = tempfile::tempdir().expect("tmp");
    let restored_data = restored_dir.path().join("data");
    let printed = ok(&switchboard(&restored_data, &["restore", file.to_str().expect("utf-8")]));
    assert!(printed.contains("resource-id") && printed.contains("keys/token-signing.pem"), "{printed}");
    let restored = ServerProcess::start(restored_dir.path(), &[]);
    assert_eq!(restored.connection_string, server.connection_string.replace(&server.endpoint, &restored.endpoint));
    let rapi = restored.api();
    assert_eq!(visible_state(&rapi).await, before, "the same rooms, participants and meetings");
    for (raw, external_id) in [(&alice, "alice@contoso.com"), (&bob, "bob@contoso.com")] {
        let (status, body) =
            rapi.call(Method::GET, &format!("/identities/{}?{IDENTITIES}", encode_id(raw)), None).await;
        assert_eq!(status, 200, "{body}");
        let body = json!({"externalId": external_id});
        let (status, body) = rapi.call(Method::POST, &format!("/identities?{IDENTITIES}"), Some(body)).await;
        assert_eq!((status, body["identity"]["id"].as_str()), (200, Some(raw.as_str())), "the same externalId mapping");
    }
    // The identities written during the backup: those in the snapshot are found again, none twice.
    let mut during = 0;
    for i in 0..40 {
        let body = json!({"externalId": format!("during-{i}")});
        let (status, _) = rapi.call(Method::POST, &format!("/identities?{IDENTITIES}"), Some(body)).await;
        during += u32::from(status == 200);
    }
    eprintln!("{during} of 40 identities created during the backup are in it");
    let status = restored.terminate();
    assert!(status.success(), "{status:?}");
    drop(server);

    // The revocation came along: bob's old token is refused, alice's still verifies.
    let running = switchboard::server::start(test_config(restored_dir.path())).await.expect("start on restored data");
    let verifier = running.token_verifier();
    assert_eq!(verifier.verify(&bob_token, Action::JoinCall, now()), Err(TokenError::Revoked));
    let alice_verified = verifier.verify(&alice_token, Action::JoinCall, now()).expect("alice's token verifies");
    assert_eq!(alice_verified.raw_id, alice);
    running.stop().await;
}
