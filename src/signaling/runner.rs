//! One loop for every session, whatever carries its signaling: messages from the client go to the
//! `SessionHandler`; the handler's outbox, worker events, identity revocations and the server's
//! shutdown are turned into messages back; the carrier is closed at the end.

use super::context::SignalingContext;
use super::messages::{CallState, ErrorCode, ServerMessage};
use super::session::{CloseRequest, SessionHandler};
use crate::media::command::SessionInput;
use crate::media::quic::close_code;
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

/// Messages queued for one client before it counts as not keeping up.
pub const OUTBOX: usize = 512;

/// Something that arrived for the session.
pub enum Incoming {
    /// One signaling message from the client.
    Frame(Bytes),
    /// Something from the media worker.
    Worker(SessionInput),
    /// The client went away.
    Gone,
}

/// How a session's signaling travels.
pub trait Carrier: Send {
    /// The next input (cancel-safe: it is polled inside `select!`).
    fn next(&mut self) -> impl Future<Output = Incoming> + Send;
    /// Deliver a message; false when the carrier is gone.
    fn send(&mut self, msg: &ServerMessage) -> impl Future<Output = bool> + Send;
    /// End the session (with a reason when the server ends it).
    fn close(&mut self, reason: Option<CloseRequest>) -> impl Future<Output = ()> + Send;
}

/// Run a session to its end.
pub async fn run_session<C: Carrier>(
    ctx: Arc<SignalingContext>,
    mut handler: SessionHandler,
    mut carrier: C,
    mut outgoing: mpsc::Receiver<ServerMessage>,
) {
    let mut identity_events = ctx.directory.subscribe();
    let mut close: Option<CloseRequest> = None;
    let mut gone = false;
    loop {
        tokio::select! {
            biased;
            input = carrier.next() => match input {
                Incoming::Frame(bytes) => {
                    if let Some(c) = handler.on_frame(&bytes).await {
                        close = Some(c);
                        break;
                    }
                }
                Incoming::Worker(SessionInput::LayerChanged { subscription, layer }) => {
                    handler.send(ServerMessage::LayerChanged { subscription_id: subscription.0, layer });
                }
                Incoming::Worker(SessionInput::Signal(msg)) => handler.send(msg),
                Incoming::Worker(SessionInput::Malformed { reason }) => {
                    ctx.messages.with_label_values(&["malformed"]).inc();
                    handler.send(ServerMessage::error(None, ErrorCode::MessageTooLarge, reason));
                }
                Incoming::Worker(SessionInput::Frame(bytes)) => {
                    if let Some(c) = handler.on_frame(&bytes).await {
                        close = Some(c);
                        break;
                    }
                }
                Incoming::Worker(SessionInput::Closed { reason }) => {
                    handler.send(ServerMessage::CallStateChanged {
                        state: CallState::Disconnected,
                        code: None,
                        reason: Some(reason.clone()),
                    });
                    close = Some(CloseRequest { code: close_code::NORMAL, reason });
                    break;
                }
                Incoming::Gone => {
                    gone = true;
                    break;
                }
            },
            Some(msg) = outgoing.recv() => {
                handler.observe_outgoing(&msg);
                if !carrier.send(&msg).await {
                    gone = true;
                    break;
                }
            }
            event = identity_events.recv() => {
                let revoked = match event {
                    Ok(event) => handler.revoked_by(&event),
                    Err(broadcast::error::RecvError::Lagged(_)) => handler.revoked_now(),
                    Err(broadcast::error::RecvError::Closed) => false,
                };
                if revoked {
                    handler.send(ServerMessage::CallStateChanged {
                        state: CallState::Disconnected,
                        code: Some(ErrorCode::TokenRevoked),
                        reason: Some("the access token was revoked".into()),
                    });
                    close = Some(CloseRequest { code: close_code::TOKEN_REVOKED, reason: "token revoked".into() });
                    break;
                }
            }
            () = ctx.shutdown.cancelled() => {
                handler.send(ServerMessage::CallStateChanged {
                    state: CallState::Disconnected,
                    code: Some(ErrorCode::ServerShutdown),
                    reason: Some("the server is shutting down".into()),
                });
                close = Some(CloseRequest { code: close_code::SERVER_SHUTDOWN, reason: "server shutting down".into() });
                break;
            }
        }
    }
    handler.leave(if gone { "disconnected" } else { "left" });
    if !gone {
        while let Ok(msg) = outgoing.try_recv() {
            if !carrier.send(&msg).await {
                break;
            }
        }
    }
    carrier.close(if gone { None } else { close }).await;
}
