//! `POST /dev/token`: a fresh identity and a `voip` token, for the demo page. Off unless
//! `[dev] token_endpoint = true`: it hands tokens to anyone who asks.

use super::error::{AcsError, AcsErrorResponse};
use super::identities::rfc3339;
use super::state::AppState;
use crate::auth::Scopes;
use crate::identity::IdentityId;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// A fresh identity and its `voip` token.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DevToken {
    /// The raw ID.
    identity: String,
    token: String,
    #[schema(format = DateTime)]
    expires_on: String,
}

#[utoipa::path(
    post, path = "/dev/token", operation_id = "dev_token", tag = "dev",
    responses(
        (status = 200, description = "A fresh identity and a voip token", body = DevToken),
        (status = 404, description = "Disabled (`[dev] token_endpoint = false`, the default)", body = AcsErrorResponse),
        (status = 500, description = "The store failed", body = AcsErrorResponse),
    ),
)]
pub async fn token(State(s): State<AppState>) -> Result<Response, AcsError> {
    if !s.dev_token_endpoint {
        return Err(AcsError::not_found("NotFound", "the dev token endpoint is disabled ([dev] token_endpoint)"));
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let state = s.clone();
    let issued = tokio::task::spawn_blocking(move || {
        let (record, _) = state.directory.create(None, i64::try_from(now.as_millis()).unwrap_or(i64::MAX))?;
        let id = IdentityId(record.id);
        let token = state
            .issuer
            .issue(id, Scopes::VOIP, state.default_lifetime, i64::try_from(now.as_secs()).unwrap_or(i64::MAX))
            .map_err(AcsError::internal)?;
        Ok::<_, AcsError>((id.raw(&state.resource_id), token))
    })
    .await
    .map_err(AcsError::internal)??;
    let (identity, token) = issued;
    Ok(axum::Json(DevToken { identity, token: token.token, expires_on: rfc3339(token.expires_on) }).into_response())
}
