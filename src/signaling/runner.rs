//! One loop for every session, whatever carries its signaling: messages from the client go to the
//! `SessionHandler`; room events, device notices (incoming calls), worker events, the identity's
//! token status, the token's expiry and the server's shutdown are turned into messages back; the
//! carrier is closed at the end. A session outlives the calls it joins: only the connection
//! going away, a revocation, an expired token, not keeping up or a shutdown end it.

use super::context::SignalingContext;
use super::messages::{EndReason, ErrorCode, ServerMessage};
use super::session::{CloseRequest, SessionHandler};
use crate::devices::TokenStatus;
use crate::media::command::SessionInput;
use crate::media::quic::close_code;
use crate::rooms::{MemberEvents, RoomEvent};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::watch;

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
pub async fn run_session<C: Carrier>(ctx: Arc<SignalingContext>, mut handler: SessionHandler, mut carrier: C) {
    let mut gone = false;
    // See `crate::panics`: a panic ends this session only. It still leaves its call, so nobody
    // keeps seeing a participant whose session is gone.
    let ran = crate::panics::catch_unwind(run_until_closed(&ctx, &mut handler, &mut carrier, &mut gone)).await;
    if let Err(payload) = ran {
        ctx.panics.with_label_values(&["session"]).inc();
        tracing::error!(panic = crate::panics::message(payload.as_ref()), "a signaling session panicked; ending it");
        let cleanup = crate::panics::catch_unwind(Box::pin(handler.leave(EndReason::ConnectionLost))).await;
        if cleanup.is_err() {
            tracing::error!(
                "leaving the call after a panic panicked too; the participant may linger until the room empties"
            );
        }
        Box::pin(
            carrier.close(Some(CloseRequest { code: close_code::INTERNAL_ERROR, reason: "internal error".to_owned() })),
        )
        .await;
        return;
    }
    Box::pin(handler.leave(EndReason::ConnectionLost)).await;
    Box::pin(carrier.close(if gone { None } else { handler.take_close() })).await;
}

async fn next_room_event(events: &mut Option<MemberEvents>) -> Option<Arc<RoomEvent>> {
    match events {
        Some(e) => e.rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn cancelled(token: Option<tokio_util::sync::CancellationToken>) {
    match token {
        Some(t) => t.cancelled_owned().await,
        None => std::future::pending().await,
    }
}

async fn status_changed(status: Option<&mut watch::Receiver<TokenStatus>>) {
    if let Some(rx) = status
        && rx.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The session's loop, until the client goes away (`gone`) or the server asks to close.
///
/// What the loop awaits in answer to an input (joining a call, leaving it) is boxed: a session
/// spends its life waiting in `select!`, and an unboxed handler future would make every idle
/// session's task as large as the largest of them (about 2.4 KB of the 33 KB an idle QUIC
/// participant cost; BENCHMARKS.md).
async fn run_until_closed<C: Carrier>(
    ctx: &SignalingContext,
    handler: &mut SessionHandler,
    carrier: &mut C,
    gone: &mut bool,
) {
    // Absolute from the start: nothing the client sends before registering moves it.
    let register_by = tokio::time::Instant::now() + ctx.register_timeout;
    loop {
        let expiry = handler.token_deadline();
        let register_deadline = (!handler.is_registered()).then_some(register_by);
        let lobby_deadline = handler.lobby_deadline();
        let overflow = handler.room_events.as_ref().map(|e| e.overflowed.clone());
        tokio::select! {
            input = carrier.next() => match input {
                Incoming::Frame(bytes) | Incoming::Worker(SessionInput::Frame(bytes)) => {
                    if crate::panics::injected("session") && bytes.as_ref() == br#"{"type":"debugPanic"}"# {
                        panic!("injected by SWITCHBOARD_DEBUG_PANIC=session");
                    }
                    Box::pin(handler.on_frame(&bytes)).await;
                }
                // A worker may report a switch it made just before this session left the call:
                // the client has been told the call ended, so a subscription it no longer has
                // must not come back to life in its next call (or in the lobby).
                Incoming::Worker(SessionInput::LayerChanged { subscription, layer }) => {
                    if handler.has_subscription(subscription) {
                        handler.send(ServerMessage::LayerChanged { subscription_id: subscription.0, layer });
                    }
                }
                Incoming::Worker(SessionInput::Offer { sdp, room, offer_id }) => handler.on_worker_offer(sdp, room, offer_id),
                Incoming::Worker(SessionInput::Malformed { reason }) => {
                    ctx.messages.with_label_values(&["malformed"]).inc();
                    handler.send(ServerMessage::error(None, ErrorCode::MessageTooLarge, reason));
                }
                Incoming::Worker(SessionInput::Closed { .. }) => {
                    Box::pin(handler.end_session(EndReason::ConnectionLost, close_code::NORMAL)).await;
                }
                Incoming::Gone => *gone = true,
            },
            Some(event) = next_room_event(&mut handler.room_events) => Box::pin(handler.on_room_event(event)).await,
            () = cancelled(overflow) => {
                Box::pin(handler.end_session(EndReason::NotKeepingUp, close_code::NOT_KEEPING_UP)).await;
            }
            Some(notice) = handler.notices.recv() => handler.on_notice(notice),
            () = status_changed(handler.registration.as_mut().map(|r| &mut r.device.status)) => {
                Box::pin(handler.check_revocation()).await;
            }
            () = sleep_until(expiry) => {
                Box::pin(handler.end_session(EndReason::TokenExpired, close_code::TOKEN_EXPIRED)).await;
            }
            () = sleep_until(lobby_deadline) => Box::pin(handler.lobby_timed_out()).await,
            () = sleep_until(register_deadline) => {
                Box::pin(handler.end_session(EndReason::RegisterTimeout, close_code::NOT_REGISTERED)).await;
            }
            () = ctx.shutdown.cancelled() => {
                Box::pin(handler.end_session(EndReason::ServerShutdown, close_code::SERVER_SHUTDOWN)).await;
            }
        }
        while !*gone && let Some(msg) = handler.next_outgoing() {
            if !carrier.send(&msg).await {
                *gone = true;
            }
        }
        if *gone || handler.close_request().is_some() {
            break;
        }
    }
}
