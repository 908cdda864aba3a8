//! Middleware that admits a management request only with a valid ACS HMAC signature. It buffers
//! the body because the signature covers its hash, then hands the same bytes on to the handler.
//! The buffer is bounded before it is filled: a `Content-Length` over `http.max_body_bytes` is
//! refused without reading the body, a body without one stops being read at the bound, and the
//! whole body must arrive within `http.body_timeout_seconds`.

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
    let too_large = || {
        AcsError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLarge",
            format!("request body exceeds {} bytes", state.max_body_bytes),
        )
        .into_response()
    };
    let declared = parts.headers.get(axum::http::header::CONTENT_LENGTH).map(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared {
        Some(None) => {
            return AcsError::new(StatusCode::BAD_REQUEST, "BadRequest", "Content-Length is not a number")
                .into_response();
        }
        Some(Some(n)) if n > state.max_body_bytes as u64 => return too_large(),
        _ => {}
    }
    let body = match tokio::time::timeout(state.body_timeout, axum::body::to_bytes(body, state.max_body_bytes)).await {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => return too_large(),
        Err(_) => {
            state.timed_out.with_label_values(&["body"]).inc();
            return AcsError::new(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeout",
                format!("the request body did not arrive within {} s", state.body_timeout.as_secs()),
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
