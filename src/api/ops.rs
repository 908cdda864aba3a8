//! Operational endpoints: liveness, readiness, Prometheus metrics and the JWKS.

use super::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

#[utoipa::path(get, path = "/healthz", operation_id = "healthz", tag = "operations",
    responses((status = 200, description = "The process answers", body = String, content_type = "text/plain")))]
pub async fn healthz() -> impl IntoResponse {
    "ok\n"
}

#[utoipa::path(get, path = "/readyz", operation_id = "readyz", tag = "operations",
    responses(
        (status = 200, description = "Every listener is up", body = String, content_type = "text/plain"),
        (status = 503, description = "Starting or stopping", body = String, content_type = "text/plain"),
    ))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.health.is_ready() { (StatusCode::OK, "ready\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready\n") }
}

#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "operations",
    params(("Authorization" = Option<String>, Header,
        description = "`Bearer <http.metrics_token>` when the server sets one")),
    responses(
        (status = 200, description = "Prometheus text exposition, prefix `switchboard_`", body = String,
            content_type = "text/plain"),
        (status = 401, description = "`http.metrics_token` is set and the request does not carry it",
            body = super::error::AcsErrorResponse),
    ))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_bytes(), token.as_bytes()).is_err() {
            let refused =
                super::AcsError::unauthorized("GET /metrics needs Authorization: Bearer <http.metrics_token>");
            return ([(header::WWW_AUTHENTICATE, "Bearer")], refused).into_response();
        }
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let alive = runtime.metrics().num_alive_tasks();
        state.metrics.runtime_tasks.set(i64::try_from(alive).unwrap_or(i64::MAX));
    }
    if let Some(cpu) = crate::metrics::process_cpu_seconds() {
        state.metrics.cpu_seconds.set(cpu);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

#[utoipa::path(get, path = "/.well-known/jwks.json", operation_id = "jwks", tag = "operations",
    responses((status = 200, description = "The token-signing public keys", body = crate::auth::keys::Jwks)))]
pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "public, max-age=300")],
        state.keys.jwks_json().to_owned(),
    )
}
