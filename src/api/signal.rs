//! `GET /signal`: the WebSocket signaling endpoint for browsers.

use super::error::{AcsError, AcsErrorResponse};
use super::state::AppState;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

/// A request that is not a WebSocket upgrade gets the ACS error shape like every other refusal.
#[utoipa::path(
    get, path = "/signal", operation_id = "signal", tag = "signaling",
    description = "The WebSocket signaling endpoint (docs/PROTOCOL.md); a session registers with an access token.",
    responses(
        (status = 101, description = "Upgraded to a WebSocket"),
        (status = 400, description = "Not a WebSocket upgrade request", body = AcsErrorResponse),
        (status = 426, description = "The connection cannot be upgraded", body = AcsErrorResponse),
    ),
)]
pub async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return AcsError::new(e.status(), "BadRequest", e.body_text()).into_response(),
    };
    let ctx = state.signaling.clone();
    // Behind a trusted reverse proxy, the client is who it says it forwarded.
    let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let client = crate::signaling::client_addr::client_ip(peer.ip(), forwarded, &ctx.trusted_proxies);
    let remote = SocketAddr::new(client, peer.port());
    // The socket reads messages up to twice the limit, so one over the limit is answered
    // (`MessageTooLarge`, then close 1009) rather than cut off; what is larger still is a
    // protocol error, answered the same way as far as the socket allows.
    let read_limit = ctx.max_message_bytes.saturating_mul(2);
    ws.max_message_size(read_limit)
        .max_frame_size(read_limit)
        .on_upgrade(move |socket| crate::signaling::ws_session::run_ws_session(ctx, socket, remote))
}
