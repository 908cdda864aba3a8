//! The ACS Rooms API over real HTTPS: an in-process server on an ephemeral port for the API, a
//! `switchboard` process killed with `kill -9` for persistence, and the room directory's
//! admission answers after API changes.

mod common;

use common::{Api, ServerProcess, Tamper, encode_id, test_config};
use reqwest::Method;
use serde_json::{Value, json};
use switchboard::identity::IdentityId;
use switchboard::room_directory::RoomAdmissionError;
use switchboard::rooms::Role;
use switchboard::server::{self, RunningServer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const V: &str = "api-version=2024-04-15";

async fn start_with(page_size: i64, max_participants: i64) -> (tempfile::TempDir, RunningServer, Api) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = test_config(dir.path());
    config.rooms.page_size = page_size.try_into().expect("page size in range");
    config.rooms.max_participants_per_room = max_participants.try_into().expect("limit in range");
    let running = server::start(config).await.expect("server starts");
    let api = Api::new(&running.connection_string(), &std::fs::read(&running.trust_cert).expect("CA"));
    (dir, running, api)
}

async fn start() -> (tempfile::TempDir, RunningServer, Api) {
    start_with(100, 1000).await
}

/// A new communication user of the server, as its raw ID.
async fn user(api: &Api) -> String {
    let (status, body) = api.call(Method::POST, "/identities?api-version=2023-10-01", None).await;
    assert_eq!(status, 201, "{body}");
    body["identity"]["id"].as_str().expect("id").to_owned()
}

fn parse_time(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap_or_else(|| panic!("{v} is a string")), &Rfc3339).expect("RFC 3339")
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("format")
}

/// Now, to the microsecond (the precision rooms keep).
fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000).expect("still a valid nanosecond")
}

async fn create(api: &Api, body: Value) -> Value {
    let (status, room) = api.call(Method::POST, &format!("/rooms?{V}"), Some(body)).await;
    assert_eq!(status, 201, "{room}");
    room
}

/// Every `{rawId: role}` of a room, following `nextLink`s; also returns how many pages it took.
async fn all_participants(api: &Api, room: &str) -> (Vec<(String, String)>, usize) {
    let mut path = format!("/rooms/{room}/participants?{V}");
    let (mut all, mut pages) = (Vec::new(), 0);
    loop {
        let (status, body) = api.call(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        for p in body["value"].as_array().expect("value") {
            all.push((p["rawId"].as_str().expect("rawId").to_owned(), p["role"].as_str().expect("role").to_owned()));
        }
        match body["nextLink"].as_str() {
            Some(link) => path = api.path_of(link),
            None => break,
        }
    }
    all.sort();
    (all, pages)
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

#[tokio::test]
async fn create_get_update_delete_through_every_endpoint() {
    let (_dir, running, api) = start().await;
    let (alice, bob) = (user(&api).await, user(&api).await);

    // Defaults: valid from now for 180 days, no PSTN dial-out, a numeric ID.
    let before = now();
    let room = create(&api, json!({})).await;
    let id = room["id"].as_str().expect("id").to_owned();
    assert!(id.len() == 17 && id.bytes().all(|b| b.is_ascii_digit()), "{id}");
    let (from, until) = (parse_time(&room["validFrom"]), parse_time(&room["validUntil"]));
    assert!(from >= before - time::Duration::seconds(1) && from <= now(), "{room}");
    assert_eq!(until - from, time::Duration::days(180), "{room}");
    assert_eq!(room["createdAt"], room["validFrom"], "{room}");
    assert_eq!(room["pstnDialOutEnabled"], false);
    let (status, got) = api.call(Method::GET, &format!("/rooms/{id}?{V}"), None).await;
    assert_eq!((status, &got), (200, &room));
    let (_, none) = all_participants(&api, &id).await;
    assert_eq!(none, 1);

    // With participants and roles; a role left out (or null) is Attendee; a null entry is skipped.
    let valid_from = now() + time::Duration::hours(1);
    let valid_until = valid_from + time::Duration::days(2);
    let skipped = user(&api).await;
    let room = create(
        &api,
        json!({
            "validFrom": rfc3339(valid_from),
            "validUntil": rfc3339(valid_until),
            "pstnDialOutEnabled": true,
            "participants": { alice.clone(): {"role": "Presenter"}, bob.clone(): {}, skipped: null },
        }),
    )
    .await;
    assert_eq!(parse_time(&room["validFrom"]), valid_from, "sub-second digits survive: {room}");
    assert_eq!(parse_time(&room["validUntil"]), valid_until);
    assert_eq!(room["pstnDialOutEnabled"], true);
    let id = room["id"].as_str().expect("id").to_owned();
    let (participants, _) = all_participants(&api, &id).await;
    assert_eq!(
        participants,
        sorted(vec![(alice.clone(), "Presenter".to_owned()), (bob.clone(), "Attendee".to_owned())])
    );

    // PATCH is a merge patch: null and absent fields stay as they are (the SDKs send nulls).
    let path = format!("/rooms/{id}?{V}");
    let (status, patched) = api
        .call(Method::PATCH, &path, Some(json!({"validFrom": null, "validUntil": null, "pstnDialOutEnabled": false})))
        .await;
    assert_eq!(status, 200, "{patched}");
    let mut expected = room.clone();
    expected["pstnDialOutEnabled"] = json!(false);
    assert_eq!(patched, expected);
    let new_until = valid_from + time::Duration::days(180);
    let (status, patched) = api.call(Method::PATCH, &path, Some(json!({"validUntil": rfc3339(new_until)}))).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(parse_time(&patched["validUntil"]), new_until);
    assert_eq!(patched["validFrom"], room["validFrom"]);
    assert_eq!(api.call(Method::GET, &path, None).await.1, patched, "GET shows the patched room");

    // Delete: 204, then 404; deleting again is still 204, as ACS answers.
    assert_eq!(api.call(Method::DELETE, &path, None).await.0, 204);
    let (status, body) = api.call(Method::GET, &path, None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "NotFound");
    assert_eq!(api.call(Method::DELETE, &path, None).await.0, 204);
    let (status, _) = api.call(Method::GET, &format!("/rooms/{id}/participants?{V}"), None).await;
    assert_eq!(status, 404);
    let (status, _) = api.call(Method::PATCH, &path, Some(json!({"pstnDialOutEnabled": true}))).await;
    assert_eq!(status, 404);
    running.stop().await;
}

#[tokio::test]
async fn validity_rules_follow_acs_and_name_the_field() {
    let (_dir, running, api) = start().await;
    let t = now();
    let cases = [
        (json!({"validUntil": rfc3339(t + time::Duration::days(181))}), "validUntil"),
        (
            json!({"validFrom": rfc3339(t + time::Duration::days(2)), "validUntil": rfc3339(t + time::Duration::days(1))}),
            "validUntil",
        ),
        (json!({"validUntil": rfc3339(t - time::Duration::minutes(1))}), "validUntil"),
        (json!({"validFrom": rfc3339(t + time::Duration::days(181))}), "validFrom"),
        (json!({"validFrom": "next tuesday"}), "validFrom"),
        (json!({"validFrom": 5}), "validFrom"),
        (json!({"pstnDialOutEnabled": "yes"}), "pstnDialOutEnabled"),
    ];
    for (body, target) in &cases {
        let (status, err) = api.call(Method::POST, &format!("/rooms?{V}"), Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"]["code"], "BadRequest", "{body}: {err}");
        assert_eq!(err["error"]["target"], *target, "{body}: {err}");
    }
    // The 180-day errors carry an ACS-style BadArgument detail.
    let (_, err) = api.call(Method::POST, &format!("/rooms?{V}"), Some(cases[0].0.clone())).await;
    assert_eq!(err["error"]["details"][0]["code"], "BadArgument", "{err}");
    assert!(err["error"]["message"].as_str().expect("message").contains("180 days"), "{err}");

    // The same rules on PATCH, where the unchanged bound counts too; a refused PATCH changes nothing.
    let room = create(&api, json!({"validUntil": rfc3339(t + time::Duration::days(10))})).await;
    let path = format!("/rooms/{}?{V}", room["id"].as_str().expect("id"));
    for (body, target) in [
        (json!({"validFrom": rfc3339(t + time::Duration::days(11))}), "validUntil"),
        (json!({"validUntil": rfc3339(t + time::Duration::days(181))}), "validUntil"),
        (json!({"validUntil": rfc3339(t - time::Duration::days(1))}), "validUntil"),
    ] {
        let (status, err) = api.call(Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!((status, &err["error"]["target"]), (400, &json!(target)), "{body}: {err}");
    }
    assert_eq!(api.call(Method::GET, &path, None).await.1, room);
    let ok = json!({"validFrom": rfc3339(t + time::Duration::days(1)), "validUntil": rfc3339(t + time::Duration::days(181))});
    assert_eq!(api.call(Method::PATCH, &path, Some(ok)).await.0, 200, "exactly 180 days is allowed");

    // Room IDs: malformed is 400, well-formed but unknown is 404.
    let (status, err) = api.call(Method::GET, &format!("/rooms/invalid_id?{V}"), None).await;
    assert_eq!((status, &err["error"]["target"]), (400, &json!("roomId")), "{err}");
    let unknown = format!("/rooms/12345678901234567?{V}");
    let (status, headers, err) = api.call_with_headers(Method::GET, &unknown, None, &[]).await;
    assert_eq!((status, &err["error"]["code"]), (404, &json!("NotFound")), "{err}");
    assert_eq!(headers["x-ms-error-code"], "NotFound", "the code in the header too, as ACS sends it");
    running.stop().await;
}

#[tokio::test]
async fn participants_are_added_re_roled_and_removed_by_merge_patch() {
    let (_dir, running, api) = start_with(100, 3).await;
    let (alice, bob, carol, dave) = (user(&api).await, user(&api).await, user(&api).await, user(&api).await);
    let room = create(&api, json!({"participants": {alice.clone(): {"role": "Attendee"}}})).await;
    let id = room["id"].as_str().expect("id").to_owned();
    let path = format!("/rooms/{id}/participants?{V}");

    // Add two, change one role (case-insensitive role names, as ACS).
    let patch = json!({"participants": {
        alice.clone(): {"role": "presenter"}, bob.clone(): {"role": "Consumer"}, carol.clone(): {"role": "Collaborator"}
    }});
    let (status, body) = api.call(Method::PATCH, &path, Some(patch)).await;
    assert_eq!((status, &body), (200, &json!({})), "participants PATCH answers 200 {{}}");
    let expected = vec![
        (alice.clone(), "Presenter".to_owned()),
        (bob.clone(), "Consumer".to_owned()),
        (carol.clone(), "Collaborator".to_owned()),
    ];
    assert_eq!(all_participants(&api, &id).await.0, sorted(expected));

    // The admission the join path asks reflects the list.
    let directory = running.room_directory();
    let at = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
    let identity = |raw: &str| IdentityId(raw.rsplit('_').next().expect("uuid").parse().expect("uuid"));
    assert_eq!(directory.admission(&id, identity(&bob), at(now())).expect("bob may join"), Role::Consumer);
    assert!(matches!(directory.admission(&id, identity(&dave), at(now())), Err(RoomAdmissionError::NotAParticipant)));

    // A fourth participant exceeds max_participants_per_room = 3: refused, nothing changes.
    let (status, err) = api.call(Method::PATCH, &path, Some(json!({"participants": {dave.clone(): {}}}))).await;
    assert_eq!((status, &err["error"]["target"]), (400, &json!("participants")), "{err}");
    // null removes; removing one and adding another in one request fits.
    let patch = json!({"participants": {bob.clone(): null, dave.clone(): {}}});
    assert_eq!(api.call(Method::PATCH, &path, Some(patch)).await.0, 200);
    let expected = vec![
        (alice.clone(), "Presenter".to_owned()),
        (carol.clone(), "Collaborator".to_owned()),
        (dave.clone(), "Attendee".to_owned()),
    ];
    assert_eq!(all_participants(&api, &id).await.0, sorted(expected.clone()));
    assert!(matches!(directory.admission(&id, identity(&bob), at(now())), Err(RoomAdmissionError::NotAParticipant)));
    let absent = json!({"participants": {bob.clone(): null}});
    assert_eq!(api.call(Method::PATCH, &path, Some(absent)).await.0, 200, "removing a non-participant is fine");

    // Bad participants are refused by name, and nothing of the request is applied.
    let foreign = format!("8:acs:{}_{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    for raw in ["wrong_mri", "8:echo123", foreign.as_str()] {
        let patch = json!({"participants": {raw: {"role": "Attendee"}, alice.clone(): null}});
        let (status, err) = api.call(Method::PATCH, &path, Some(patch)).await;
        assert_eq!(status, 400, "{raw}: {err}");
        assert_eq!(err["error"]["target"], format!("participants.{raw}"), "{err}");
        assert!(err["error"]["message"].as_str().expect("message").contains(raw), "names the participant: {err}");
    }
    let patch = json!({"participants": {alice.clone(): {"role": "Kafka"}}});
    let (status, err) = api.call(Method::PATCH, &path, Some(patch)).await;
    assert_eq!((status, &err["error"]["target"]), (400, &json!(format!("participants.{alice}.role"))), "{err}");
    let (status, _) = api.call(Method::POST, &format!("/rooms?{V}"), Some(json!({"participants": {"x": {}}}))).await;
    assert_eq!(status, 400, "create refuses bad participants too");
    assert_eq!(all_participants(&api, &id).await.0, sorted(expected), "refused requests changed nothing");

    let unknown = format!("/rooms/12345678901234567/participants?{V}");
    assert_eq!(api.call(Method::PATCH, &unknown, Some(json!({"participants": {}}))).await.0, 404);
    running.stop().await;
}

#[tokio::test]
async fn lists_page_through_next_links() {
    let (_dir, running, api) = start_with(2, 1000).await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(create(&api, json!({})).await["id"].as_str().expect("id").to_owned());
    }
    let mut path = format!("/rooms?{V}");
    let (mut seen, mut pages) = (Vec::new(), 0);
    loop {
        let (status, body) = api.call(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        let value = body["value"].as_array().expect("value");
        assert!(value.len() <= 2, "{body}");
        seen.extend(value.iter().map(|r| r["id"].as_str().expect("id").to_owned()));
        let Some(link) = body["nextLink"].as_str() else { break };
        assert!(link.starts_with("https://") && link.contains("api-version=2024-04-15"), "{link}");
        path = api.path_of(link);
    }
    assert_eq!(pages, 3);
    created.reverse();
    assert_eq!(seen, created, "every room once, newest first");
    let (status, err) = api.call(Method::GET, &format!("/rooms?{V}&nextLink=garbage"), None).await;
    assert_eq!((status, &err["error"]["target"]), (400, &json!("nextLink")), "{err}");

    let mut members = serde_json::Map::new();
    for _ in 0..5 {
        members.insert(user(&api).await, json!({"role": "Attendee"}));
    }
    let room = create(&api, json!({"participants": members})).await;
    let (listed, pages) = all_participants(&api, room["id"].as_str().expect("id")).await;
    assert_eq!((listed.len(), pages), (5, 3));
    running.stop().await;
}

#[tokio::test]
async fn repeated_create_returns_the_first_room() {
    let (_dir, running, api) = start().await;
    let request_id = uuid::Uuid::new_v4().to_string();
    let first_sent = httpdate::fmt_http_date(std::time::SystemTime::now());
    let headers =
        [("Repeatability-Request-ID", request_id.as_str()), ("Repeatability-First-Sent", first_sent.as_str())];
    let path = format!("/rooms?{V}");
    let (status, response_headers, first) = api.call_with_headers(Method::POST, &path, Some(json!({})), &headers).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(response_headers["repeatability-result"], "accepted");
    let (status, _, again) = api.call_with_headers(Method::POST, &path, Some(json!({})), &headers).await;
    assert_eq!((status, &again), (201, &first), "a retried create does not make a second room");
    let (_, list) = api.call(Method::GET, &path, None).await;
    assert_eq!(list["value"].as_array().expect("value").len(), 1);
    let (status, _, err) = api.call_with_headers(Method::POST, &path, Some(json!({})), &headers[..1]).await;
    assert_eq!((status, &err["error"]["target"]), (400, &json!("Repeatability-First-Sent")), "{err}");
    running.stop().await;
}

#[tokio::test]
async fn signature_and_api_version_are_required() {
    let (_dir, running, api) = start().await;
    let (status, body) = api.get_public(&format!("/rooms?{V}")).await;
    assert_eq!(status, 401, "{body}");
    let bad_key = Tamper { wrong_key: true, ..Tamper::default() };
    let (status, body) = api.call_tampered(Method::POST, &format!("/rooms?{V}"), Some(json!({})), bad_key).await;
    assert_eq!((status, &body["error"]["code"]), (401, &json!("Unauthorized")), "{body}");
    let (_, list) = api.call(Method::GET, &format!("/rooms?{V}"), None).await;
    assert_eq!(list["value"], json!([]), "the refused create made nothing");

    let (status, body) = api.call(Method::GET, "/rooms", None).await;
    assert_eq!((status, &body["error"]["code"]), (400, &json!("MissingApiVersionParameter")));
    let (status, body) = api.call(Method::GET, "/rooms?api-version=2023-10-01", None).await;
    assert_eq!((status, &body["error"]["code"]), (400, &json!("UnsupportedApiVersion")));
    for v in ["2023-06-14", "2024-04-15", "2025-03-13"] {
        assert_eq!(api.call(Method::POST, &format!("/rooms?api-version={v}"), None).await.0, 201, "{v}");
    }
    running.stop().await;
}

#[tokio::test]
async fn admission_follows_the_validity_window_and_deletion() {
    let (_dir, running, api) = start().await;
    let alice = user(&api).await;
    let later = now() + time::Duration::hours(1);
    let room =
        create(&api, json!({"validFrom": rfc3339(later), "participants": {alice.clone(): {"role": "Presenter"}}}))
            .await;
    let id = room["id"].as_str().expect("id").to_owned();
    let directory = running.room_directory();
    let alice_id = IdentityId(alice.rsplit('_').next().expect("uuid").parse().expect("uuid"));
    let ms = |t: OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
    let e = directory.admission(&id, alice_id, ms(now())).expect_err("not open yet");
    assert_eq!(e.reason(), "outside_validity");
    assert_eq!(directory.admission(&id, alice_id, ms(later) + 1).expect("open"), Role::Presenter);
    let after = later + time::Duration::days(180);
    assert!(matches!(directory.admission(&id, alice_id, ms(after) + 1), Err(RoomAdmissionError::Expired)));
    assert_eq!(api.call(Method::DELETE, &format!("/rooms/{id}?{V}"), None).await.0, 204);
    let e = directory.admission(&id, alice_id, ms(later)).expect_err("deleted");
    assert_eq!(e.reason(), "room_not_found");
    running.stop().await;
}

#[tokio::test]
async fn rooms_and_participants_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = ServerProcess::start(dir.path(), &[]);
    let api = server.api();
    let (alice, bob) = (user(&api).await, user(&api).await);
    let room = create(
        &api,
        json!({"pstnDialOutEnabled": true, "participants": {alice.clone(): {"role": "Presenter"}, bob.clone(): {"role": "Consumer"}}}),
    )
    .await;
    let id = room["id"].as_str().expect("id").to_owned();
    let patch = json!({"participants": {bob.clone(): null}});
    assert_eq!(api.call(Method::PATCH, &format!("/rooms/{id}/participants?{V}"), Some(patch)).await.0, 200);
    let gone = create(&api, json!({})).await["id"].as_str().expect("id").to_owned();
    assert_eq!(api.call(Method::DELETE, &format!("/rooms/{gone}?{V}"), None).await.0, 204);
    server.kill9();

    let server = ServerProcess::start(dir.path(), &[]);
    let api = server.api();
    let (status, again) = api.call(Method::GET, &format!("/rooms/{id}?{V}"), None).await;
    assert_eq!((status, &again), (200, &room), "the room comes back as it was");
    assert_eq!(all_participants(&api, &id).await.0, vec![(alice.clone(), "Presenter".to_owned())]);
    assert_eq!(api.call(Method::GET, &format!("/rooms/{gone}?{V}"), None).await.0, 404);
    // The identity API still finds the participant, by the same raw ID.
    assert_eq!(
        api.call(Method::GET, &format!("/identities/{}?api-version=2023-10-01", encode_id(&alice)), None).await.0,
        200
    );
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}
