//! WebSocket sessions (`wss://HOST/signal`): JSON messages as WebSocket text messages; media over
//! WebRTC on a media worker chosen round-robin.

use super::context::SignalingContext;
use super::messages::ServerMessage;
use super::runner::{Carrier, Incoming, run_session};
use super::session::{CloseRequest, SessionHandler, Transport};
use crate::lean_queue;
use crate::media::command::{Command, SessionInput};
use crate::media::ids::SessionId;
use crate::media::plane::WorkerHandle;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use std::net::SocketAddr;
use std::sync::Arc;

/// Worker events queued for one session.
const INBOX: usize = 128;

/// Serve one WebSocket until it closes.
pub async fn run_ws_session(ctx: Arc<SignalingContext>, mut ws: WebSocket, remote: SocketAddr) {
    let session = SessionId::next();
    let (inbox_tx, inbox) = lean_queue::channel(INBOX);
    // The next worker in turn, or the first after it with room: WebSocket sessions count against
    // `max_sessions_per_worker` like QUIC ones.
    let first = ctx.next_worker();
    let count = ctx.workers.len();
    let mut placed = None;
    for worker in (0..count).map(|i| (first + i) % count) {
        let handle = ctx.workers[worker].clone();
        let inbox = inbox_tx.clone();
        if let Ok(true) = handle.request(|reply| Command::WebRtcOpen { session, inbox, reply }).await {
            placed = Some((worker, handle));
            break;
        }
    }
    drop(inbox_tx);
    let Some((worker, handle)) = placed else {
        tracing::warn!(%remote, "WebSocket session refused: every media worker is full or stopping");
        let refusal = ServerMessage::Error {
            id: None,
            code: super::messages::ErrorCode::ServiceUnavailable,
            message: "no media worker has room (each has media.max_sessions_per_worker sessions, or the server is stopping); try again later".into(),
        };
        let _ = ws.send(Message::Text(refusal.to_json().into())).await;
        // 1013: try again later (RFC 6455 registry).
        let _ = ws.send(Message::Close(Some(CloseFrame { code: 1013, reason: "server full".into() }))).await;
        return;
    };
    let handler = SessionHandler::new(ctx.clone(), session, worker, remote, Transport::WebRtc);
    let carrier = WsCarrier {
        ws,
        inbox,
        worker: handle,
        session,
        messages: ctx.messages.clone(),
        max_message_bytes: ctx.max_message_bytes,
    };
    run_session(ctx, handler, carrier).await;
}

struct WsCarrier {
    ws: WebSocket,
    inbox: lean_queue::Receiver<SessionInput>,
    worker: WorkerHandle,
    session: SessionId,
    messages: prometheus::IntCounterVec,
    max_message_bytes: usize,
}

impl WsCarrier {
    /// Answer a message over `[limits] max_message_bytes` as `docs/PROTOCOL.md` says: an `error`
    /// (`MessageTooLarge`, with the message's `id` when readable), then close status 1009
    /// (message too big, RFC 6455 7.4.1). The session then ends.
    async fn refuse_oversized(&mut self, id: Option<u64>, size: Option<usize>) -> Incoming {
        self.messages.with_label_values(&["malformed"]).inc();
        let what =
            size.map_or_else(|| "a signaling message".to_owned(), |n| format!("a signaling message of {n} bytes"));
        let message = format!("{what} exceeds limits.max_message_bytes ({} bytes)", self.max_message_bytes);
        let error = ServerMessage::error(id, super::messages::ErrorCode::MessageTooLarge, message);
        let _ = self.ws.send(Message::Text(error.to_json().into())).await;
        let frame = CloseFrame { code: 1009, reason: "message too large".into() };
        if self.ws.send(Message::Close(Some(frame))).await.is_ok() {
            self.await_close_reply().await;
        }
        Incoming::Gone
    }

    /// After our close frame, wait (briefly) for the client's, so the closing handshake
    /// completes: a socket dropped before the client's reply arrives is answered with a TCP
    /// reset, and the browser reports the close as unclean (1006 or `wasClean: false`).
    async fn await_close_reply(&mut self) {
        let reply = async {
            while let Some(Ok(m)) = self.ws.recv().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_REPLY_WAIT, reply).await;
    }
}

/// How long a closing server waits for the client's close frame.
const CLOSE_REPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl Carrier for WsCarrier {
    async fn next(&mut self) -> Incoming {
        loop {
            tokio::select! {
                msg = self.ws.recv() => match msg {
                    Some(Ok(Message::Text(text))) if text.len() > self.max_message_bytes => {
                        let id = super::messages::readable_id(text.as_bytes());
                        return self.refuse_oversized(id, Some(text.len())).await;
                    }
                    Some(Ok(Message::Binary(bytes))) if bytes.len() > self.max_message_bytes => {
                        let id = super::messages::readable_id(&bytes);
                        return self.refuse_oversized(id, Some(bytes.len())).await;
                    }
                    Some(Ok(Message::Text(text))) => return Incoming::Frame(bytes::Bytes::copy_from_slice(text.as_bytes())),
                    Some(Ok(Message::Binary(bytes))) => return Incoming::Frame(bytes),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => return Incoming::Gone,
                    Some(Err(e)) => {
                        tracing::debug!(session = %self.session, error = %e, "WebSocket error");
                        // A message or frame over twice the limit (tungstenite's capacity error,
                        // "Space limit exceeded: Message too long: …"): answered like one over it.
                        let text = e.to_string().to_lowercase();
                        if text.contains("space limit") || text.contains("too long") {
                            return self.refuse_oversized(None, None).await;
                        }
                        // Other protocol errors (bad frames) end the socket.
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
            // 1011: the server met an unexpected condition (RFC 6455 7.4.1).
            let code: u16 = if c.code == crate::media::quic::close_code::INTERNAL_ERROR { 1011 } else { 1000 };
            let frame = CloseFrame { code, reason: c.reason.into() };
            if self.ws.send(Message::Close(Some(frame))).await.is_ok() {
                self.await_close_reply().await;
            }
        }
    }
}
