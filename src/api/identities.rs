//! `/identities`: the ACS Communication Identity API (`api-version=2023-10-01` and earlier GA
//! versions, plus `externalId`).

use super::error::AcsError;
use super::extract::{AcsJson, SupportedVersions, Versioned, parse_json};
use super::state::AppState;
use crate::auth::{Scopes, TokenLifetime};
use crate::identity::{IdentityId, RawIdError};
use crate::store::IdentityRecord;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};

/// API versions of the identity API that this server implements.
pub struct IdentityApi;

impl SupportedVersions for IdentityApi {
    const VERSIONS: &'static [&'static str] =
        &["2021-03-07", "2022-06-01", "2022-10-01", "2023-10-01", "2025-03-02-preview", "2025-06-30"];
}

type Version = Versioned<IdentityApi>;

/// Longest accepted `externalId`.
const MAX_EXTERNAL_ID_LEN: usize = 256;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateIdentity {
    #[serde(default)]
    create_token_with_scopes: Option<Vec<String>>,
    #[serde(default)]
    expires_in_minutes: Option<i64>,
    /// `customId` is ACS's name for it (`2025-03-02-preview`); both are accepted.
    #[serde(default, alias = "customId")]
    external_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssueToken {
    scopes: Vec<String>,
    #[serde(default)]
    expires_in_minutes: Option<i64>,
}

/// `POST /identities`
pub async fn create(
    State(s): State<AppState>,
    _v: Version,
    AcsJson(req): AcsJson<CreateIdentity>,
) -> Result<Response, AcsError> {
    if let Some(ext) = &req.external_id
        && (ext.is_empty() || ext.len() > MAX_EXTERNAL_ID_LEN)
    {
        return Err(AcsError::bad_request(
            format!("externalId must be 1 to {MAX_EXTERNAL_ID_LEN} characters"),
            "externalId",
        ));
    }
    let token_request = match &req.create_token_with_scopes {
        Some(scopes) if !scopes.is_empty() => {
            Some((parse_scopes(scopes, "createTokenWithScopes")?, lifetime(&s, req.expires_in_minutes)?))
        }
        _ => None,
    };
    let now = unix_now();
    let state = s.clone();
    let (record, created, token) = blocking(move || {
        let (record, created) = state.directory.create(req.external_id.as_deref(), now.ms)?;
        let token = match token_request {
            Some((scopes, lifetime)) => Some(issue(&state, IdentityId(record.id), scopes, lifetime, now.secs)?),
            None => None,
        };
        Ok::<_, AcsError>((record, created, token))
    })
    .await??;
    let mut body = json!({ "identity": identity_json(&s, &record) });
    if let Some(token) = token {
        body["accessToken"] = token;
    }
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(body)).into_response())
}

/// `GET /identities/{id}`
pub async fn get(State(s): State<AppState>, _v: Version, Path(raw): Path<String>) -> Result<Response, AcsError> {
    let id = parse_id(&s, &raw)?;
    let state = s.clone();
    let record = blocking(move || state.directory.get(id)).await??.ok_or_else(not_found)?;
    Ok(axum::Json(identity_json(&s, &record)).into_response())
}

/// `DELETE /identities/{id}`: also revokes every token of the identity.
pub async fn delete(State(s): State<AppState>, _v: Version, Path(raw): Path<String>) -> Result<Response, AcsError> {
    let id = parse_id(&s, &raw)?;
    let state = s.clone();
    if blocking(move || state.directory.delete(id)).await?? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found())
    }
}

/// `POST /identities/{id}/:issueAccessToken` and `POST /identities/{id}/:revokeAccessTokens`
pub async fn action(
    State(s): State<AppState>,
    _v: Version,
    Path((raw, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, AcsError> {
    let id = parse_id(&s, &raw)?;
    match action.as_str() {
        ":issueAccessToken" => {
            let req: IssueToken = parse_json(&body)?;
            if req.scopes.is_empty() {
                return Err(AcsError::bad_request("scopes must name at least one scope", "scopes"));
            }
            let scopes = parse_scopes(&req.scopes, "scopes")?;
            let lifetime = lifetime(&s, req.expires_in_minutes)?;
            let now = unix_now().secs;
            let state = s.clone();
            let token = blocking(move || issue(&state, id, scopes, lifetime, now)).await??;
            Ok(axum::Json(token).into_response())
        }
        ":revokeAccessTokens" => {
            let state = s.clone();
            if blocking(move || state.directory.revoke_tokens(id)).await?? {
                Ok(StatusCode::NO_CONTENT.into_response())
            } else {
                Err(not_found())
            }
        }
        other => Err(AcsError::not_found("UnknownOperation", format!("unknown identity operation '{other}'"))),
    }
}

fn issue(
    s: &AppState,
    id: IdentityId,
    scopes: Scopes,
    lifetime: TokenLifetime,
    now: i64,
) -> Result<serde_json::Value, AcsError> {
    use crate::auth::token::IssueError;
    let result = s.issuer.issue(id, scopes, lifetime, now);
    let label = match &result {
        Ok(_) => "ok",
        Err(IssueError::UnknownIdentity) => "unknown_identity",
        Err(_) => "error",
    };
    s.metrics.tokens.issues.with_label_values(&[label]).inc();
    match result {
        Ok(t) => Ok(json!({ "token": t.token, "expiresOn": rfc3339(t.expires_on) })),
        Err(IssueError::UnknownIdentity) => Err(not_found()),
        Err(IssueError::NoScopes) => Err(AcsError::bad_request("at least one scope is required", "scopes")),
        Err(e) => Err(AcsError::internal(e)),
    }
}

fn parse_scopes(names: &[String], target: &str) -> Result<Scopes, AcsError> {
    Scopes::parse(names.iter().map(String::as_str)).map_err(|e| AcsError::bad_request(e.to_string(), target))
}

fn lifetime(s: &AppState, minutes: Option<i64>) -> Result<TokenLifetime, AcsError> {
    match minutes {
        None => Ok(s.default_lifetime),
        Some(m) => TokenLifetime::from_minutes(m).map_err(|e| AcsError::bad_request(e.to_string(), "expiresInMinutes")),
    }
}

fn parse_id(s: &AppState, raw: &str) -> Result<IdentityId, AcsError> {
    IdentityId::parse_raw(raw, &s.resource_id).map_err(|e| match e {
        RawIdError::ForeignResource => not_found(),
        _ => AcsError::bad_request(format!("'{raw}' is not a communication user ID: {e}"), "id"),
    })
}

fn not_found() -> AcsError {
    AcsError::not_found("IdentityNotFound", "the identity does not exist")
}

fn identity_json(s: &AppState, r: &IdentityRecord) -> serde_json::Value {
    let mut v = json!({ "id": IdentityId(r.id).raw(&s.resource_id) });
    if let Some(ext) = &r.external_id {
        v["externalId"] = ext.clone().into();
        v["customId"] = ext.clone().into();
    }
    if let Some(ms) = r.last_token_issued_at_ms {
        v["lastTokenIssuedAt"] = rfc3339(ms / 1000).into();
    }
    v
}

struct UnixNow {
    secs: i64,
    ms: i64,
}

fn unix_now() -> UnixNow {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    UnixNow {
        secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        ms: i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
    }
}

/// Unix seconds as an RFC 3339 UTC timestamp (`2026-11-28T12:00:00Z`).
pub fn rfc3339(unix_secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Run store work off the async runtime.
pub(super) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, AcsError> {
    tokio::task::spawn_blocking(f).await.map_err(AcsError::internal)
}
