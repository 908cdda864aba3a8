//! The Meetings API over real HTTPS: an in-process server on an ephemeral port for the API and
//! the meeting directory's lookups, a `switchboard` process killed with `kill -9` for
//! persistence, and the `org` claim of tokens issued through the identity API.

mod common;

use common::{Api, ServerProcess, Tamper, test_config};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashSet;
use switchboard::auth::Action;
use switchboard::identity::IdentityId;
use switchboard::meeting_directory::{LobbyBypassScope, MeetingDirectory, MeetingRole};
use switchboard::organization::{ExternalIdPattern, OrgStatus};
use switchboard::server::{self, RunningServer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const V: &str = "api-version=2025-01-01";

async fn start_with(change: impl FnOnce(&mut switchboard::config::Config)) -> (tempfile::TempDir, RunningServer, Api) {
    let dir = tempfile::tempdir().expect("tmp");
    let mut config = test_config(dir.path());
    change(&mut config);
    let running = server::start(config).await.expect("server starts");
    let api = Api::new(&running.connection_string(), &std::fs::read(&running.trust_cert).expect("CA"));
    (dir, running, api)
}

async fn start() -> (tempfile::TempDir, RunningServer, Api) {
    start_with(|_| {}).await
}

/// A new communication user of the server, as its raw ID.
async fn user(api: &Api) -> String {
    let (status, body) = api.call(Method::POST, "/identities?api-version=2023-10-01", None).await;
    assert_eq!(status, 201, "{body}");
    body["identity"]["id"].as_str().expect("id").to_owned()
}

/// Graph's `meetingParticipantInfo` for a raw ID.
fn participant(raw: &str, role: Option<&str>) -> Value {
    let mut p = json!({ "identity": { "user": { "id": raw } } });
    if let Some(role) = role {
        p["role"] = role.into();
    }
    p
}

fn parse_time(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap_or_else(|| panic!("{v} is a string")), &Rfc3339).expect("RFC 3339")
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("format")
}

/// Now, to the microsecond (the precision meetings keep).
fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000).expect("still a valid nanosecond")
}

async fn create(api: &Api, body: Value) -> Value {
    let (status, meeting) = api.call(Method::POST, &format!("/meetings?{V}"), Some(body)).await;
    assert_eq!(status, 201, "{meeting}");
    meeting
}

fn identity_of(raw: &str) -> IdentityId {
    IdentityId(raw.rsplit('_').next().expect("uuid").parse().expect("uuid"))
}

#[tokio::test]
async fn create_with_defaults_then_get_patch_delete() {
    let (_dir, running, api) = start().await;
    let organizer = user(&api).await;

    // Graph's defaults: now for an hour, nobody invited, lobby bypass `organization`, everyone
    // presents, no passcode. Graph has no api-version, so none is needed.
    let before = now();
    let (status, meeting) = api
        .call(Method::POST, "/meetings", Some(json!({"participants": {"organizer": participant(&organizer, None)}})))
        .await;
    assert_eq!(status, 201, "{meeting}");
    let id = meeting["id"].as_str().expect("id").to_owned();
    let (start, end) = (parse_time(&meeting["startDateTime"]), parse_time(&meeting["endDateTime"]));
    assert!(start >= before - time::Duration::seconds(1) && start <= now(), "{meeting}");
    assert_eq!(end - start, time::Duration::hours(1), "{meeting}");
    assert_eq!(meeting["creationDateTime"], meeting["startDateTime"]);
    assert_eq!(meeting["subject"], Value::Null);
    assert_eq!(
        meeting["participants"]["organizer"],
        json!({"identity": {"user": {"id": organizer}}, "role": "presenter"})
    );
    assert_eq!(meeting["participants"]["attendees"], json!([]));
    assert_eq!(meeting["lobbyBypassSettings"], json!({"scope": "organization", "isDialInBypassEnabled": false}));
    assert_eq!(meeting["allowedPresenters"], "everyone");
    let settings = &meeting["joinMeetingIdSettings"];
    assert_eq!((&settings["isPasscodeRequired"], &settings["passcode"]), (&json!(false), &Value::Null), "{meeting}");
    let join_id = settings["joinMeetingId"].as_str().expect("a string, as in Graph");
    assert!(join_id.len() == 12 && join_id.bytes().all(|b| b.is_ascii_digit()), "{join_id}");
    let url = meeting["joinWebUrl"].as_str().expect("joinWebUrl");
    let token = url.strip_prefix(&format!("{}meet/", running.endpoint)).expect("on the public endpoint");
    assert_eq!(token.len(), 22, "a 128-bit token: {url}");

    let path = format!("/meetings/{id}?{V}");
    assert_eq!(api.call(Method::GET, &path, None).await, (200, meeting.clone()));
    assert_eq!(api.call(Method::GET, &format!("/meetings/{id}"), None).await, (200, meeting.clone()));

    // PATCH changes only what it names; a lobby setting left out keeps its value (Graph's
    // example patches isDialInBypassEnabled alone).
    let (status, patched) = api
        .call(
            Method::PATCH,
            &path,
            Some(json!({"subject": "Design review", "lobbyBypassSettings": {"isDialInBypassEnabled": true}})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    let mut expected = meeting.clone();
    expected["subject"] = json!("Design review");
    expected["lobbyBypassSettings"]["isDialInBypassEnabled"] = json!(true);
    assert_eq!(patched, expected);

    // Times move together; attendees are replaced by the full list; the organizer and
    // joinMeetingIdSettings may be sent back unchanged; other read-only properties are ignored.
    let (a, b) = (user(&api).await, user(&api).await);
    let new_start = now() + time::Duration::days(1);
    let patch = json!({
        "startDateTime": rfc3339(new_start),
        "endDateTime": rfc3339(new_start + time::Duration::minutes(30)),
        "participants": {
            "organizer": meeting["participants"]["organizer"].clone(),
            "attendees": [participant(&a, Some("presenter")), participant(&b, None)],
        },
        "lobbyBypassSettings": {"scope": "invited"},
        "allowedPresenters": "roleIsPresenter",
        "joinMeetingIdSettings": meeting["joinMeetingIdSettings"].clone(),
        "joinWebUrl": "https://elsewhere.example/meet/x",
        "id": "ignored",
    });
    let (status, patched) = api.call(Method::PATCH, &path, Some(patch)).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(parse_time(&patched["startDateTime"]), new_start, "sub-second digits survive");
    assert_eq!(parse_time(&patched["endDateTime"]), new_start + time::Duration::minutes(30));
    assert_eq!(
        patched["participants"]["attendees"],
        json!([
            {"identity": {"user": {"id": a}}, "role": "presenter"},
            {"identity": {"user": {"id": b}}, "role": "attendee"},
        ])
    );
    assert_eq!(patched["lobbyBypassSettings"], json!({"scope": "invited", "isDialInBypassEnabled": true}));
    assert_eq!(patched["allowedPresenters"], "roleIsPresenter");
    for unchanged in ["id", "joinWebUrl", "joinMeetingIdSettings", "creationDateTime", "subject"] {
        assert_eq!(patched[unchanged], expected[unchanged], "{unchanged}");
    }
    assert_eq!(api.call(Method::GET, &path, None).await, (200, patched.clone()));

    // The directory the join path asks sees the same meeting.
    let record = running.meeting_directory().by_link(url).expect("lookup").expect("found");
    assert_eq!(record.id.to_string(), id);
    assert_eq!(record.lobby_bypass_scope, LobbyBypassScope::Invited);
    assert_eq!(record.role_of(identity_of(&a)), Some(MeetingRole::Presenter));

    // Delete: 204, then 404 everywhere.
    assert_eq!(api.call(Method::DELETE, &path, None).await.0, 204);
    let (status, body) = api.call(Method::GET, &path, None).await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("NotFound")), "{body}");
    assert_eq!(api.call(Method::DELETE, &path, None).await.0, 404);
    assert_eq!(api.call(Method::PATCH, &path, Some(json!({"subject": "x"}))).await.0, 404);
    assert_eq!(running.meeting_directory().by_link(url).expect("lookup"), None);
    running.stop().await;
}

#[tokio::test]
async fn attendees_roles_and_the_passcode_are_kept_as_requested() {
    let (_dir, running, api) = start().await;
    let (organizer, a, b, c) = (user(&api).await, user(&api).await, user(&api).await, user(&api).await);
    let start = now() + time::Duration::hours(2);
    let body = json!({
        "subject": "Board meeting ✓",
        "startDateTime": rfc3339(start),
        "endDateTime": rfc3339(start + time::Duration::hours(3)),
        "participants": {
            "organizer": participant(&organizer, Some("presenter")),
            "attendees": [
                participant(&c, Some("coorganizer")),
                participant(&a, Some("Presenter")),
                {"identity": {"user": {"id": b, "displayName": "Bob"}}, "upn": "bob@contoso.com", "role": null},
            ],
        },
        "lobbyBypassSettings": {"scope": "organizationExcludingGuests", "isDialInBypassEnabled": true},
        "allowedPresenters": "organization",
        "joinMeetingIdSettings": {"isPasscodeRequired": true},
    });
    let meeting = create(&api, body).await;
    assert_eq!(meeting["subject"], "Board meeting ✓");
    assert_eq!(parse_time(&meeting["startDateTime"]), start);
    assert_eq!(
        meeting["participants"]["attendees"],
        json!([
            {"identity": {"user": {"id": c}}, "role": "coorganizer"},
            {"identity": {"user": {"id": a}}, "role": "presenter"},
            {"identity": {"user": {"id": b}}, "role": "attendee"},
        ]),
        "listed order, canonical role names, attendee by default"
    );
    assert_eq!(
        meeting["lobbyBypassSettings"],
        json!({"scope": "organizationExcludingGuests", "isDialInBypassEnabled": true})
    );
    assert_eq!(meeting["allowedPresenters"], "organization");
    let passcode = meeting["joinMeetingIdSettings"]["passcode"].as_str().expect("required, so present");
    assert_eq!(meeting["joinMeetingIdSettings"]["isPasscodeRequired"], true);
    assert_eq!(passcode.len(), 6);
    assert!(passcode.bytes().all(|b| b.is_ascii_alphanumeric()), "{passcode}");

    // The join path: by join meeting ID (as typed, with spaces), then the passcode.
    let join_id = meeting["joinMeetingIdSettings"]["joinMeetingId"].as_str().expect("join ID");
    let typed = format!("{} {} {} {}", &join_id[..3], &join_id[3..6], &join_id[6..9], &join_id[9..]);
    let record = running.meeting_directory().by_join_id(&typed).expect("lookup").expect("found");
    assert_eq!(record.id.to_string(), meeting["id"].as_str().expect("id"));
    assert!(MeetingDirectory::check_passcode(&record, passcode));
    assert!(!MeetingDirectory::check_passcode(&record, "000000"));
    let joiner = record.joiner(identity_of(&c), OrgStatus::External);
    assert!(joiner.invited && !record.bypasses_lobby(&joiner), "organizationExcludingGuests: members only");
    assert!(record.bypasses_lobby(&record.joiner(identity_of(&a), OrgStatus::Member)));

    // Without isPasscodeRequired, no passcode; the server chooses passcodes and join IDs.
    let open = create(&api, json!({"participants": {"organizer": participant(&organizer, None)}, "joinMeetingIdSettings": {"isPasscodeRequired": false}})).await;
    assert_eq!(open["joinMeetingIdSettings"]["passcode"], Value::Null);
    for (settings, target) in [
        (json!({"passcode": "123abc"}), "joinMeetingIdSettings.passcode"),
        (json!({"joinMeetingId": "123456789012"}), "joinMeetingIdSettings.joinMeetingId"),
    ] {
        let body =
            json!({"participants": {"organizer": participant(&organizer, None)}, "joinMeetingIdSettings": settings});
        let (status, err) = api.call(Method::POST, &format!("/meetings?{V}"), Some(body)).await;
        assert_eq!((status, &err["error"]["target"]), (400, &json!(target)), "{err}");
    }
    running.stop().await;
}

#[tokio::test]
async fn bad_requests_are_refused_naming_the_field() {
    let (_dir, running, api) = start_with(|c| {
        c.meetings.max_attendees_per_meeting = 2.try_into().expect("in range");
        c.meetings.max_subject_chars = 10.try_into().expect("in range");
    })
    .await;
    let (organizer, a, b, c) = (user(&api).await, user(&api).await, user(&api).await, user(&api).await);
    let org = || participant(&organizer, None);
    let t = now();
    let foreign = format!("8:acs:{}_{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let cases = [
        (json!({}), "participants.organizer"),
        (json!({"participants": {"organizer": {}}}), "participants.organizer.identity"),
        (
            json!({"participants": {"organizer": {"identity": {"application": {"id": "x"}}}}}),
            "participants.organizer.identity.user",
        ),
        (json!({"participants": {"organizer": {"identity": {"user": {}}}}}), "participants.organizer.identity.user.id"),
        (
            json!({"participants": {"organizer": participant("8:echo123", None)}}),
            "participants.organizer.identity.user.id",
        ),
        (
            json!({"participants": {"organizer": participant(&organizer, Some("attendee"))}}),
            "participants.organizer.role",
        ),
        (
            json!({"participants": {"organizer": org(), "attendees": [participant(&foreign, None)]}}),
            "participants.attendees[0].identity.user.id",
        ),
        (
            json!({"participants": {"organizer": org(), "attendees": [participant(&a, Some("boss"))]}}),
            "participants.attendees[0].role",
        ),
        (
            json!({"participants": {"organizer": org(), "attendees": [participant(&a, None), participant(&a, None)]}}),
            "participants.attendees[1]",
        ),
        (
            json!({"participants": {"organizer": org(), "attendees": [participant(&organizer, None)]}}),
            "participants.attendees[0]",
        ),
        (
            json!({"participants": {"organizer": org(), "attendees": [participant(&a, None), participant(&b, None), participant(&c, None)]}}),
            "participants.attendees",
        ),
        (
            json!({"participants": {"organizer": org()}, "lobbyBypassSettings": {"scope": "unknownFutureValue"}}),
            "lobbyBypassSettings.scope",
        ),
        (
            json!({"participants": {"organizer": org()}, "lobbyBypassSettings": {"isDialInBypassEnabled": "yes"}}),
            "lobbyBypassSettings.isDialInBypassEnabled",
        ),
        (json!({"participants": {"organizer": org()}, "allowedPresenters": "anyone"}), "allowedPresenters"),
        (json!({"participants": {"organizer": org()}, "endDateTime": rfc3339(t)}), "startDateTime"),
        (
            json!({"participants": {"organizer": org()}, "startDateTime": rfc3339(t), "endDateTime": rfc3339(t - time::Duration::minutes(1))}),
            "endDateTime",
        ),
        (json!({"participants": {"organizer": org()}, "startDateTime": "tomorrow"}), "startDateTime"),
        (json!({"participants": {"organizer": org()}, "subject": "eleven char"}), "subject"),
        (json!({"participants": {"organizer": org()}, "subject": 5}), "subject"),
        (json!({"participants": {"organizer": org()}, "subject": "a\u{1b}[2J"}), "subject"),
    ];
    for (body, target) in &cases {
        let (status, err) = api.call(Method::POST, &format!("/meetings?{V}"), Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"]["code"], "BadRequest", "{body}: {err}");
        assert_eq!(err["error"]["target"], *target, "{body}: {err}");
    }
    let (_, err) = api.call(Method::POST, &format!("/meetings?{V}"), Some(cases[11].0.clone())).await;
    assert!(
        err["error"]["message"].as_str().expect("message").contains("organizationAndFederated"),
        "names what is allowed: {err}"
    );

    // PATCH: the same checks, plus what cannot change; a refused PATCH changes nothing.
    let meeting =
        create(&api, json!({"participants": {"organizer": org(), "attendees": [participant(&a, None)]}})).await;
    let path = format!("/meetings/{}?{V}", meeting["id"].as_str().expect("id"));
    for (body, target) in [
        (json!({"startDateTime": rfc3339(t)}), "endDateTime"),
        (json!({"endDateTime": rfc3339(t)}), "startDateTime"),
        (json!({"participants": {"organizer": participant(&a, None)}}), "participants.organizer"),
        (
            json!({"participants": {"attendees": [participant(&b, None), participant(&b, None)]}}),
            "participants.attendees[1]",
        ),
        (json!({"joinMeetingIdSettings": {"isPasscodeRequired": true}}), "joinMeetingIdSettings.isPasscodeRequired"),
        (json!({"lobbyBypassSettings": {"scope": "nobody"}}), "lobbyBypassSettings.scope"),
        (json!({"subject": "far too long"}), "subject"),
    ] {
        let (status, err) = api.call(Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!((status, &err["error"]["target"]), (400, &json!(target)), "{body}: {err}");
    }
    assert_eq!(api.call(Method::GET, &path, None).await.1, meeting, "refused requests changed nothing");

    // IDs and versions.
    let (status, err) = api.call(Method::GET, &format!("/meetings/not-a-meeting?{V}"), None).await;
    assert_eq!((status, &err["error"]["target"]), (400, &json!("meetingId")), "{err}");
    let unknown = format!("/meetings/{}?{V}", uuid::Uuid::new_v4());
    assert_eq!(api.call(Method::GET, &unknown, None).await.0, 404);
    let (status, err) = api.call(Method::GET, "/meetings?api-version=2024-04-15", None).await;
    assert_eq!((status, &err["error"]["code"]), (400, &json!("UnsupportedApiVersion")), "{err}");
    let (status, _) = api.call(Method::GET, "/meetings?api-version=2025-01-01", None).await;
    assert_eq!(status, 200);
    running.stop().await;
}

#[tokio::test]
async fn join_meeting_ids_are_unique_and_links_resolve() {
    let (_dir, running, api) = start().await;
    let organizer = user(&api).await;
    let directory = running.meeting_directory();
    let (mut join_ids, mut links) = (HashSet::new(), HashSet::new());
    for _ in 0..40 {
        let m = create(&api, json!({"participants": {"organizer": participant(&organizer, None)}})).await;
        let join_id = m["joinMeetingIdSettings"]["joinMeetingId"].as_str().expect("join ID").to_owned();
        assert!(join_id.len() == 12 && !join_id.starts_with('0'), "{join_id}");
        let url = m["joinWebUrl"].as_str().expect("url").to_owned();
        let by_id = directory.by_join_id(&join_id).expect("lookup").expect("found by join ID");
        let by_link = directory.by_link(&url).expect("lookup").expect("found by link");
        assert_eq!(
            (by_id.id.to_string(), by_link.id.to_string()),
            (m["id"].as_str().expect("id").to_owned(), m["id"].as_str().expect("id").to_owned())
        );
        assert!(join_ids.insert(join_id), "join meeting IDs are unique");
        assert!(links.insert(url), "join links are unique");
    }
    assert_eq!(directory.by_join_id("123").expect("lookup"), None);
    assert_eq!(directory.by_link(&format!("{}meet/AAAAAAAAAAAAAAAAAAAAAA", running.endpoint)).expect("lookup"), None);
    // The join link opens the call page, with no signature (the token is checked when it joins).
    let token = links.iter().next().expect("a link").rsplit('/').next().expect("token").to_owned();
    let (status, page) = api.get_public(&format!("/meet/{token}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("<html"), "the call page");
    running.stop().await;
}

#[tokio::test]
async fn lists_page_through_odata_next_links() {
    let (_dir, running, api) = start_with(|c| c.meetings.page_size = 2.try_into().expect("in range")).await;
    let organizer = user(&api).await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(
            create(&api, json!({"participants": {"organizer": participant(&organizer, None)}})).await["id"].clone(),
        );
    }
    let (mut path, mut seen, mut pages) = ("/meetings".to_owned(), Vec::new(), 0);
    loop {
        let (status, body) = api.call(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        seen.extend(body["value"].as_array().expect("value").iter().map(|m| m["id"].clone()));
        let Some(link) = body["@odata.nextLink"].as_str() else { break };
        path = api.path_of(link);
    }
    created.reverse();
    assert_eq!((seen, pages), (created, 3), "every meeting once, newest first");
    let (status, err) = api.call(Method::GET, "/meetings?$skiptoken=garbage", None).await;
    assert_eq!((status, &err["error"]["target"]), (400, &json!("$skiptoken")), "{err}");
    running.stop().await;
}

#[tokio::test]
async fn only_signed_requests_reach_meetings() {
    let (_dir, running, api) = start().await;
    let organizer = user(&api).await;
    let body = json!({"participants": {"organizer": participant(&organizer, None)}});
    let (status, text) = api.get_public(&format!("/meetings?{V}")).await;
    assert_eq!(status, 401, "{text}");
    let resp = api.client.post(format!("{}meetings", running.endpoint)).json(&body).send().await.expect("sent");
    assert_eq!(resp.status().as_u16(), 401, "an unsigned create");
    let bad_key = Tamper { wrong_key: true, ..Tamper::default() };
    let (status, err) = api.call_tampered(Method::POST, &format!("/meetings?{V}"), Some(body.clone()), bad_key).await;
    assert_eq!((status, &err["error"]["code"]), (401, &json!("Unauthorized")), "{err}");
    let tampered = Tamper { body_after_signing: Some(&br#"{"participants":{}}"#[..]), ..Tamper::default() };
    assert_eq!(api.call_tampered(Method::POST, &format!("/meetings?{V}"), Some(body), tampered).await.0, 401);
    let (_, list) = api.call(Method::GET, &format!("/meetings?{V}"), None).await;
    assert_eq!(list["value"], json!([]), "the refused creates made nothing");
    running.stop().await;
}

#[tokio::test]
async fn org_claim_of_identity_api_tokens_decides_the_lobby() {
    let (_dir, running, api) = start_with(|c| {
        let pattern = |s: &str| ExternalIdPattern::try_from(s.to_owned()).expect("valid pattern");
        c.organization.member_domains = vec![pattern("*@contoso.com")];
        c.organization.guest_domains = vec![pattern("*@guests.example")];
        c.organization.federated_domains = vec![pattern("*@fabrikam.com")];
    })
    .await;
    let mut joiners = Vec::new();
    for (external_id, status) in [
        (Some("ada@Contoso.com"), OrgStatus::Member),
        (Some("gus@guests.example"), OrgStatus::Guest),
        (Some("fay@fabrikam.com"), OrgStatus::Federated),
        (Some("eve@example.org"), OrgStatus::External),
        (None, OrgStatus::External),
    ] {
        let mut body = json!({"createTokenWithScopes": ["voip"]});
        if let Some(ext) = external_id {
            body["externalId"] = ext.into();
        }
        let (code, created) = api.call(Method::POST, "/identities?api-version=2025-06-30", Some(body)).await;
        assert_eq!(code, 201, "{created}");
        let token = created["accessToken"]["token"].as_str().expect("token");
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let verified = running.token_verifier().verify(token, Action::JoinCall, now).expect("valid");
        assert_eq!(verified.org, status, "{external_id:?}");
        joiners.push(verified);
    }
    let organizer = user(&api).await;
    let meeting = create(
        &api,
        json!({"participants": {"organizer": participant(&organizer, None)}, "lobbyBypassSettings": {"scope": "organization"}}),
    )
    .await;
    let record = running
        .meeting_directory()
        .get(meeting["id"].as_str().and_then(switchboard::meeting_directory::MeetingId::parse).expect("id"))
        .expect("get")
        .expect("found");
    let bypass: Vec<bool> = joiners.iter().map(|v| record.bypasses_lobby(&record.joiner(v.identity, v.org))).collect();
    assert_eq!(bypass, [true, true, false, false, false], "organization: members and guests");
    running.stop().await;
}

#[tokio::test]
async fn meetings_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tmp");
    let server = ServerProcess::start(dir.path(), &[]);
    let api = server.api();
    let (organizer, a) = (user(&api).await, user(&api).await);
    let meeting = create(
        &api,
        json!({
            "subject": "Persisted",
            "participants": {"organizer": participant(&organizer, None), "attendees": [participant(&a, Some("coorganizer"))]},
            "lobbyBypassSettings": {"scope": "organizationAndFederated"},
            "allowedPresenters": "roleIsPresenter",
            "joinMeetingIdSettings": {"isPasscodeRequired": true},
        }),
    )
    .await;
    let id = meeting["id"].as_str().expect("id").to_owned();
    let path = format!("/meetings/{id}?{V}");
    let (status, patched) =
        api.call(Method::PATCH, &path, Some(json!({"lobbyBypassSettings": {"scope": "everyone"}}))).await;
    assert_eq!(status, 200, "{patched}");
    let gone = create(&api, json!({"participants": {"organizer": participant(&organizer, None)}})).await;
    let gone_path = format!("/meetings/{}?{V}", gone["id"].as_str().expect("id"));
    assert_eq!(api.call(Method::DELETE, &gone_path, None).await.0, 204);
    server.kill9();

    let server = ServerProcess::start(dir.path(), &[]);
    let api = server.api();
    assert_eq!(api.call(Method::GET, &path, None).await, (200, patched), "the meeting comes back as it was");
    assert_eq!(api.call(Method::GET, &gone_path, None).await.0, 404);
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}
