//! WebSocket sessions (`wss://HOST/signal`): JSON messages as WebSocket text messages; media over
//! WebRTC on a media worker chosen round-robin.

use super::context::SignalingContext;
use super::messages::ServerMessage;
use super::runner::{Carrier, Incoming, run_session};
use super::session::{CloseRequest, SessionHandler, Transport};
use crate::media::command::{Command, SessionInput};
use crate::media::ids::SessionId;
use crate::media::plane::WorkerHandle;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Worker events queued for one session.
const INBOX: usize = 128;

/// Serve one WebSocket until it closes.
pub async fn run_ws_session(ctx: Arc<SignalingContext>, ws: WebSocket, remote: SocketAddr) {
    let worker = ctx.next_worker();
    let session = SessionId::next();
    let (inbox_tx, inbox) = mpsc::channel(INBOX);
    let handle = ctx.workers[worker].clone();
    if handle.send(Command::WebRtcOpen { session, inbox: inbox_tx }).await.is_err() {
        return;
    }
    let handler = SessionHandler::new(ctx.clone(), session, worker, remote, Transport::WebRtc);
    let carrier = WsCarrier { ws, inbox, worker: handle, session, messages: ctx.messages.clone() };
    run_session(ctx, handler, carrier).await;
}

struct WsCarrier {
    ws: WebSocket,
    inbox: mpsc::Receiver<SessionInput>,
    worker: WorkerHandle,
    session: SessionId,
    messages: prometheus::IntCounterVec,
}

impl Carrier for WsCarrier {
    async fn next(&mut self) -> Incoming {
        loop {
            tokio::select! {
                msg = self.ws.recv() => match msg {
                    Some(Ok(Message::Text(text))) => return Incoming::Frame(bytes::Bytes::copy_from_slice(text.as_bytes())),
                    Some(Ok(Message::Binary(bytes))) => return Incoming::Frame(bytes),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => return Incoming::Gone,
                    Some(Err(e)) => {
                        // Protocol errors (bad frames, oversized messages) end the socket.
                        tracing::debug!(session = %self.session, error = %e, "WebSocket error");
                        self.messages.with_label_values(&["malformed"]).inc();
                        return Incoming::Gone;
                    }
                },
                input = self.inbox.recv() => match input {
                    Some(input) => return Incoming::Worker(input),
                    None => return Incoming::Gone,
                },
            }
        }
    }

    async fn send(&mut self, msg: &ServerMessage) -> bool {
        self.ws.send(Message::Text(msg.to_json().into())).await.is_ok()
    }

    async fn close(&mut self, reason: Option<CloseRequest>) {
        // A stopped worker has forgotten the session already.
        let _ = self.worker.send(Command::CloseSession { session: self.session, code: 0, reason: String::new() }).await;
        if let Some(c) = reason {
            let frame = CloseFrame { code: 1000, reason: c.reason.into() };
            let _ = self.ws.send(Message::Close(Some(frame))).await;
        }
    }
}
