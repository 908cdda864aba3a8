//! Middleware that admits a management request only with a valid ACS HMAC signature. It buffers
//! the body (bounded by `http.max_body_bytes`) because the signature covers its hash, then hands
//! the same bytes on to the handler.

use super::error::AcsError;
use super::state::AppState;
use crate::auth::hmac::SignedRequest;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::SystemTime;

pub async fn require_signature(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, state.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return AcsError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLarge",
                format!("request body exceeds {} bytes", state.max_body_bytes),
            )
            .into_response();
        }
    };
    let host = parts
        .headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or_default();
    // The signature covers the path as sent, also when routing rewrote it.
    let path_and_query = match parts.extensions.get::<super::SentPath>() {
        Some(sent) => sent.0.as_str(),
        None => parts.uri.path_and_query().map_or("/", |p| p.as_str()),
    };
    let signed =
        SignedRequest { method: parts.method.as_str(), path_and_query, host, headers: &parts.headers, body: &body };
    if let Err(e) = state.hmac.verify(&signed, SystemTime::now()) {
        state.metrics.http.auth_failures.with_label_values(&[e.reason()]).inc();
        tracing::debug!(reason = e.reason(), path = path_and_query, "management request refused");
        return AcsError::unauthorized(e.to_string()).into_response();
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}
