//! The identity API over real HTTPS against an in-process server on an ephemeral port.

mod common;

use common::{Api, Tamper, encode_id, test_config};
use reqwest::Method;
use serde_json::json;
use switchboard::auth::{Action, TokenError};
use switchboard::server::{self, RunningServer};

const V: &str = "api-version=2023-10-01";

async fn start() -> (tempfile::TempDir, RunningServer, Api) {
    let dir = tempfile::tempdir().expect("tmp");
    let running = server::start(test_config(dir.path())).await.expect("server starts");
    let api = Api::new(&running.connection_string(), &std::fs::read(&running.trust_cert).expect("CA"));
    (dir, running, api)
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64
}

#[tokio::test]
async fn identity_lifecycle_through_every_endpoint() {
    let (_dir, running, api) = start().await;

    let (status, body) = api.call(Method::POST, &format!("/identities?{V}"), Some(json!({}))).await;
    assert_eq!(status, 201, "{body}");
    let id = body["identity"]["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("8:acs:"), "{id}");
    assert!(body.get("accessToken").is_none());

    // Create with a token in the same call.
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/identities?{V}"),
            Some(json!({"createTokenWithScopes": ["voip", "chat"], "expiresInMinutes": 60})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let token = body["accessToken"]["token"].as_str().expect("token");
    let verified = running.token_verifier().verify(token, Action::StartCall, now()).expect("token verifies");
    assert_eq!(verified.raw_id, body["identity"]["id"].as_str().expect("id"));
    let expires = body["accessToken"]["expiresOn"].as_str().expect("expiresOn");
    let expires =
        time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339).expect("rfc3339");
    assert!((expires.unix_timestamp() - now() - 3600).abs() < 10);

    // Get.
    let (status, body) = api.call(Method::GET, &format!("/identities/{}?{V}", encode_id(&id)), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], id.as_str());

    // Issue with each scope.
    for scope in ["voip", "voip.join", "chat", "chat.join", "chat.join.limited"] {
        let (status, body) = api
            .call(
                Method::POST,
                &format!("/identities/{}/:issueAccessToken?{V}", encode_id(&id)),
                Some(json!({"scopes": [scope]})),
            )
            .await;
        assert_eq!(status, 200, "{scope}: {body}");
        assert!(body["token"].as_str().is_some_and(|t| t.split('.').count() == 3));
    }
    let (_, body) = api.call(Method::GET, &format!("/identities/{}?{V}", encode_id(&id)), None).await;
    assert!(body["lastTokenIssuedAt"].is_string(), "{body}");

    // Revoke, then delete.
    let path = format!("/identities/{}/:revokeAccessTokens?{V}", encode_id(&id));
    assert_eq!(api.call(Method::POST, &path, None).await.0, 204);
    let path = format!("/identities/{}?{V}", encode_id(&id));
    assert_eq!(api.call(Method::DELETE, &path, None).await.0, 204);
    let (status, body) = api.call(Method::GET, &path, None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "IdentityNotFound");
    assert_eq!(api.call(Method::DELETE, &path, None).await.0, 404);
    let path = format!("/identities/{}/:issueAccessToken?{V}", encode_id(&id));
    assert_eq!(api.call(Method::POST, &path, Some(json!({"scopes": ["voip"]}))).await.0, 404);
    running.stop().await;
}

#[tokio::test]
async fn external_id_makes_create_idempotent() {
    let (_dir, running, api) = start().await;
    let path = format!("/identities?{V}");
    let (s1, b1) = api.call(Method::POST, &path, Some(json!({"externalId": "crm-42"}))).await;
    let (s2, b2) = api.call(Method::POST, &path, Some(json!({"externalId": "crm-42"}))).await;
    assert_eq!((s1, s2), (201, 200), "{b1} {b2}");
    assert_eq!(b1["identity"]["id"], b2["identity"]["id"]);
    let (s3, b3) = api.call(Method::POST, &path, Some(json!({"externalId": "crm-43"}))).await;
    assert_eq!(s3, 201);
    assert_ne!(b1["identity"]["id"], b3["identity"]["id"]);
    let (s, body) = api.call(Method::POST, &path, Some(json!({"externalId": ""}))).await;
    assert_eq!(s, 400);
    assert_eq!(body["error"]["target"], "externalId");
    // ACS names the same mapping `customId` (2025-03-02-preview): one identity either way.
    let (s4, b4) = api.call(Method::POST, &path, Some(json!({"customId": "crm-42"}))).await;
    assert_eq!((s4, &b4["identity"]["id"]), (200, &b1["identity"]["id"]), "{b4}");
    assert_eq!(b4["identity"]["customId"], "crm-42");
    running.stop().await;
}

#[tokio::test]
async fn lifetime_and_scope_validation_name_the_field() {
    let (_dir, running, api) = start().await;
    let (_, body) = api.call(Method::POST, &format!("/identities?{V}"), None).await;
    let id = encode_id(body["identity"]["id"].as_str().expect("id"));
    let path = format!("/identities/{id}/:issueAccessToken?{V}");
    for (minutes, expected) in [(59, 400), (60, 200), (1440, 200), (1441, 400), (-1, 400)] {
        let (status, body) =
            api.call(Method::POST, &path, Some(json!({"scopes": ["voip"], "expiresInMinutes": minutes}))).await;
        assert_eq!(status, expected, "{minutes}: {body}");
        if expected == 400 {
            assert_eq!(body["error"]["target"], "expiresInMinutes", "{body}");
        }
    }
    let (status, body) = api.call(Method::POST, &path, Some(json!({"scopes": ["video"]}))).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["target"], "scopes");
    let (status, body) = api.call(Method::POST, &path, Some(json!({"scopes": []}))).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = api.call(Method::POST, &path, Some(json!({"scopes": "voip"}))).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["target"], "scopes", "{body}");
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/identities?{V}"),
            Some(json!({"createTokenWithScopes": ["voip"], "expiresInMinutes": 5})),
        )
        .await;
    assert_eq!(status, 400);
    // Without scopes too: an out-of-range lifetime was silently ignored (found by schemathesis).
    let (status, body) =
        api.call(Method::POST, &format!("/identities?{V}"), Some(json!({"expiresInMinutes": 5}))).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["target"], "expiresInMinutes", "{body}");
    // Malformed JSON and a malformed ID.
    let (status, _) = api.call(Method::GET, &format!("/identities/not-an-id?{V}"), None).await;
    assert_eq!(status, 400);
    running.stop().await;
}

#[tokio::test]
async fn api_version_is_required_and_checked() {
    let (_dir, running, api) = start().await;
    let (status, body) = api.call(Method::POST, "/identities", None).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "MissingApiVersionParameter");
    let (status, body) = api.call(Method::POST, "/identities?api-version=1999-01-01", None).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "UnsupportedApiVersion");
    assert!(body["error"]["message"].as_str().expect("message").contains("2023-10-01"));
    for v in ["2021-03-07", "2022-10-01", "2023-10-01"] {
        assert_eq!(api.call(Method::POST, &format!("/identities?api-version={v}"), None).await.0, 201);
    }
    running.stop().await;
}

#[tokio::test]
async fn hmac_failures_get_401_with_acs_error_shape() {
    let (_dir, running, api) = start().await;
    let path = format!("/identities?{V}");
    let body = Some(json!({"externalId": "x"}));
    let cases = [
        ("wrong key", Tamper { wrong_key: true, ..Tamper::default() }),
        ("stale date", Tamper { date_offset_secs: -301, ..Tamper::default() }),
        ("future date", Tamper { date_offset_secs: 400, ..Tamper::default() }),
        ("tampered body", Tamper { body_after_signing: Some(b"{\"externalId\":\"y\"}"), ..Tamper::default() }),
        ("no authorization", Tamper { drop_header: Some("authorization"), ..Tamper::default() }),
        ("no date", Tamper { drop_header: Some("x-ms-date"), ..Tamper::default() }),
        ("no content hash", Tamper { drop_header: Some("x-ms-content-sha256"), ..Tamper::default() }),
    ];
    for (name, tamper) in cases {
        let (status, body) = api.call_tampered(Method::POST, &path, body.clone(), tamper).await;
        assert_eq!(status, 401, "{name}: {body}");
        assert_eq!(body["error"]["code"], "Unauthorized", "{name}");
        assert!(body["error"]["message"].is_string(), "{name}");
    }
    // Within the allowed skew is fine.
    let ok = Tamper { date_offset_secs: -240, ..Tamper::default() };
    assert_eq!(api.call_tampered(Method::POST, &path, body.clone(), ok).await.0, 201);
    // Nothing was created by the refused requests.
    let (status, _) = api.call(Method::POST, &format!("/identities?{V}"), Some(json!({"externalId": "y"}))).await;
    assert_eq!(status, 201, "the tampered-body request must not have created 'y'");
    let (_, metrics) = api.get_public("/metrics").await;
    assert!(metrics.contains("switchboard_http_auth_failures_total{reason=\"bad_signature\"}"), "{metrics}");
    running.stop().await;
}

#[tokio::test]
async fn revocation_and_deletion_reject_earlier_tokens_at_once() {
    let (_dir, running, api) = start().await;
    let verifier = running.token_verifier();
    let (_, body) =
        api.call(Method::POST, &format!("/identities?{V}"), Some(json!({"createTokenWithScopes": ["voip"]}))).await;
    let id = encode_id(body["identity"]["id"].as_str().expect("id"));
    let first = body["accessToken"]["token"].as_str().expect("token").to_owned();
    assert!(verifier.verify(&first, Action::JoinCall, now()).is_ok());

    assert_eq!(api.call(Method::POST, &format!("/identities/{id}/:revokeAccessTokens?{V}"), None).await.0, 204);
    assert_eq!(verifier.verify(&first, Action::JoinCall, now()), Err(TokenError::Revoked));

    let (_, body) = api
        .call(Method::POST, &format!("/identities/{id}/:issueAccessToken?{V}"), Some(json!({"scopes": ["voip"]})))
        .await;
    let second = body["token"].as_str().expect("token").to_owned();
    assert!(verifier.verify(&second, Action::JoinCall, now()).is_ok(), "a token issued after revocation works");

    assert_eq!(api.call(Method::DELETE, &format!("/identities/{id}?{V}"), None).await.0, 204);
    assert_eq!(verifier.verify(&second, Action::JoinCall, now()), Err(TokenError::IdentityDeleted));
    running.stop().await;
}

#[tokio::test]
async fn ops_endpoints_need_no_signature() {
    let (_dir, running, api) = start().await;
    assert_eq!(api.get_public("/healthz").await.0, 200);
    assert_eq!(api.get_public("/readyz").await.0, 200);
    let (status, jwks) = api.get_public("/.well-known/jwks.json").await;
    assert_eq!(status, 200);
    let jwks: serde_json::Value = serde_json::from_str(&jwks).expect("json");
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert_eq!(jwks["keys"][0]["alg"], "ES256");

    let _ = api.call(Method::POST, &format!("/identities?{V}"), Some(json!({"createTokenWithScopes": ["voip"]}))).await;
    let (status, metrics) = api.get_public("/metrics").await;
    assert_eq!(status, 200);
    for needle in [
        "switchboard_token_issues_total{result=\"ok\"} 1",
        "switchboard_http_requests_total{route=\"/identities\",status_class=\"2xx\"} 1",
        "switchboard_process_resident_memory_bytes",
        "switchboard_process_cpu_seconds_total",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    // Unknown routes get the ACS error shape; management routes are not reachable unsigned.
    let (status, body) = api.get_public("/nope").await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = api.get_public(&format!("/identities/x?{V}")).await;
    assert_eq!(status, 401);
    running.stop().await;
}

#[tokio::test]
async fn demo_page_and_sdk_are_served_and_dev_tokens_are_off_unless_enabled() {
    let (_dir, running, api) = start().await;
    let (status, page) = api.get_public("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("/demo.js"), "the demo page loads its script: {page}");
    let sdk = api.client.get(format!("{}/switchboard.js", api.cs.endpoint)).send().await.expect("request sent");
    assert_eq!(sdk.status().as_u16(), 200);
    assert_eq!(sdk.headers()["access-control-allow-origin"], "*", "pages on other origins may import the SDK");
    assert!(sdk.text().await.expect("body").contains("export class Switchboard"));
    let off = api.client.post(format!("{}/dev/token", api.cs.endpoint)).send().await.expect("request sent");
    assert_eq!(off.status().as_u16(), 404, "the dev token endpoint is off by default");
    running.stop().await;

    let dir = tempfile::tempdir().expect("tmp");
    let mut config = test_config(dir.path());
    config.dev.token_endpoint = true;
    let running = server::start(config).await.expect("server starts");
    let api = Api::new(&running.connection_string(), &std::fs::read(&running.trust_cert).expect("CA"));
    let on = api.client.post(format!("{}/dev/token", api.cs.endpoint)).send().await.expect("request sent");
    assert_eq!(on.status().as_u16(), 200);
    let body: serde_json::Value = on.json().await.expect("json");
    assert!(body["identity"].as_str().expect("identity").starts_with("8:acs:"));
    let token = body["token"].as_str().expect("token");
    assert!(running.token_verifier().verify(token, Action::JoinCall, now()).is_ok(), "a voip token");
    running.stop().await;
}
