//! `/identities`: the ACS Communication Identity API (`api-version=2023-10-01` and earlier GA
//! versions, plus `externalId`).

use super::error::{AcsError, AcsErrorResponse};
use super::extract::{AcsJson, SupportedVersions, Versioned};
use super::openapi::ScopeName;
use super::state::AppState;
use crate::auth::{Scopes, TokenLifetime};
use crate::identity::{IdentityId, RawIdError};
use crate::store::IdentityRecord;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};
use utoipa::ToSchema;

/// API versions of the identity API that this server implements.
pub struct IdentityApi;

impl SupportedVersions for IdentityApi {
    const VERSIONS: &'static [&'static str] =
        &["2021-03-07", "2022-06-01", "2022-10-01", "2023-10-01", "2025-03-02-preview", "2025-06-30"];
}

type Version = Versioned<IdentityApi>;

/// Longest accepted `externalId`.
const MAX_EXTERNAL_ID_LEN: usize = 256;

/// `POST /identities` (ACS `CommunicationIdentityCreateRequest`).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateIdentity {
    /// Also issue a token with these scopes.
    #[serde(default)]
    #[schema(value_type = Option<Vec<ScopeName>>)]
    create_token_with_scopes: Option<Vec<String>>,
    /// Lifetime of that token (default 1440).
    #[serde(default)]
    #[schema(minimum = 60, maximum = 1440)]
    expires_in_minutes: Option<i64>,
    /// Your own ID for the identity: a second create with it returns the same identity (200).
    /// `customId` is ACS's name for it (`2025-03-02-preview`); both are accepted.
    #[serde(default, alias = "customId")]
    #[schema(min_length = 1, max_length = 256)]
    external_id: Option<String>,
}

/// `POST /identities/{id}/:issueAccessToken` (ACS `CommunicationIdentityAccessTokenRequest`).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssueToken {
    #[schema(value_type = Vec<ScopeName>, min_items = 1)]
    scopes: Vec<String>,
    #[serde(default)]
    #[schema(minimum = 60, maximum = 1440)]
    expires_in_minutes: Option<i64>,
}

/// ACS `CommunicationIdentity`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommunicationIdentity {
    /// The raw ID, `8:acs:<resourceId>_<uuid>`.
    id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    external_id: Option<String>,
    /// The same as `externalId` (ACS's later name).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    custom_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, format = DateTime)]
    last_token_issued_at: Option<String>,
}

/// ACS `CommunicationIdentityAccessToken`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessToken {
    /// An ES256 JWT; verify it against `/.well-known/jwks.json`.
    token: String,
    #[schema(format = DateTime)]
    expires_on: String,
}

/// ACS `CommunicationIdentityAccessTokenResult`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedIdentity {
    identity: CommunicationIdentity,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    access_token: Option<AccessToken>,
}

/// `POST /identities`
#[utoipa::path(
    post, path = "/identities", operation_id = "CommunicationIdentity_Create", tag = "identities",
    params(Version),
    request_body = Option<CreateIdentity>,
    responses(
        (status = 201, description = "Created", body = CreatedIdentity),
        (status = 200, description = "An identity with this `externalId` exists already", body = CreatedIdentity),
    ),
)]
pub async fn create(
    State(s): State<AppState>,
    _v: Version,
    AcsJson(req): AcsJson<CreateIdentity>,
) -> Result<Response, AcsError> {
    if let Some(ext) = &req.external_id
        && (ext.is_empty() || ext.chars().count() > MAX_EXTERNAL_ID_LEN)
    {
        return Err(AcsError::bad_request(
            format!("externalId must be 1 to {MAX_EXTERNAL_ID_LEN} characters"),
            "externalId",
        ));
    }
    // Checked also without scopes: a wrong value is refused, not silently ignored.
    let lifetime = lifetime(&s, req.expires_in_minutes)?;
    let token_request = match &req.create_token_with_scopes {
        Some(scopes) if !scopes.is_empty() => Some((parse_scopes(scopes, "createTokenWithScopes")?, lifetime)),
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
    let body = CreatedIdentity { identity: identity_json(&s, &record), access_token: token };
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(body)).into_response())
}

/// `GET /identities/{id}`
#[utoipa::path(
    get, path = "/identities/{id}", operation_id = "CommunicationIdentity_Get", tag = "identities",
    params(Version, ("id" = String, Path, description = "The raw ID")),
    responses(
        (status = 200, description = "The identity", body = CommunicationIdentity),
        (status = 404, description = "No such identity", body = AcsErrorResponse),
    ),
)]
pub async fn get(State(s): State<AppState>, _v: Version, Path(raw): Path<String>) -> Result<Response, AcsError> {
    let id = parse_id(&s, &raw)?;
    let state = s.clone();
    let record = blocking(move || state.directory.get(id)).await??.ok_or_else(not_found)?;
    Ok(axum::Json(identity_json(&s, &record)).into_response())
}

/// `DELETE /identities/{id}`: also revokes every token of the identity.
#[utoipa::path(
    delete, path = "/identities/{id}", operation_id = "CommunicationIdentity_Delete", tag = "identities",
    params(Version, ("id" = String, Path, description = "The raw ID")),
    responses(
        (status = 204, description = "Deleted; its tokens stop verifying"),
        (status = 404, description = "No such identity", body = AcsErrorResponse),
    ),
)]
pub async fn delete(State(s): State<AppState>, _v: Version, Path(raw): Path<String>) -> Result<Response, AcsError> {
    let id = parse_id(&s, &raw)?;
    let state = s.clone();
    if blocking(move || state.directory.delete(id)).await?? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found())
    }
}

/// `POST /identities/{id}/:issueAccessToken`
#[utoipa::path(
    post, path = "/identities/{id}/:issueAccessToken", operation_id = "CommunicationIdentity_IssueAccessToken", tag = "identities",
    params(Version, ("id" = String, Path, description = "The raw ID")),
    request_body = IssueToken,
    responses(
        (status = 200, description = "A token", body = AccessToken),
        (status = 404, description = "No such identity", body = AcsErrorResponse),
    ),
)]
pub async fn issue_access_token(
    State(s): State<AppState>,
    _v: Version,
    Path(raw): Path<String>,
    AcsJson(req): AcsJson<IssueToken>,
) -> Result<Response, AcsError> {
    let id = parse_id(&s, &raw)?;
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

/// `POST /identities/{id}/:revokeAccessTokens`
#[utoipa::path(
    post, path = "/identities/{id}/:revokeAccessTokens", operation_id = "CommunicationIdentity_RevokeAccessTokens", tag = "identities",
    params(Version, ("id" = String, Path, description = "The raw ID")),
    responses(
        (status = 204, description = "Revoked; earlier tokens stop verifying"),
        (status = 404, description = "No such identity", body = AcsErrorResponse),
    ),
)]
pub async fn revoke_access_tokens(
    State(s): State<AppState>,
    _v: Version,
    Path(raw): Path<String>,
) -> Result<Response, AcsError> {
    let id = parse_id(&s, &raw)?;
    let state = s.clone();
    if blocking(move || state.directory.revoke_tokens(id)).await?? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(not_found())
    }
}

fn issue(
    s: &AppState,
    id: IdentityId,
    scopes: Scopes,
    lifetime: TokenLifetime,
    now: i64,
) -> Result<AccessToken, AcsError> {
    use crate::auth::token::IssueError;
    let result = s.issuer.issue(id, scopes, lifetime, now);
    let label = match &result {
        Ok(_) => "ok",
        Err(IssueError::UnknownIdentity) => "unknown_identity",
        Err(_) => "error",
    };
    s.metrics.tokens.issues.with_label_values(&[label]).inc();
    match result {
        Ok(t) => Ok(AccessToken { token: t.token, expires_on: rfc3339(t.expires_on) }),
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

fn identity_json(s: &AppState, r: &IdentityRecord) -> CommunicationIdentity {
    CommunicationIdentity {
        id: IdentityId(r.id).raw(&s.resource_id),
        external_id: r.external_id.clone(),
        custom_id: r.external_id.clone(),
        last_token_issued_at: r.last_token_issued_at_ms.map(|ms| rfc3339(ms / 1000)),
    }
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
