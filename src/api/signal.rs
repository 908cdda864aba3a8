//! `GET /signal`: the WebSocket signaling endpoint for browsers.

use super::state::AppState;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::response::Response;
use std::net::SocketAddr;

pub async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    let ctx = state.signaling.clone();
    ws.max_message_size(ctx.max_message_bytes)
        .max_frame_size(ctx.max_message_bytes)
        .on_upgrade(move |socket| crate::signaling::ws_session::run_ws_session(ctx, socket, remote))
}
