//! The control-plane task of one QUIC session: frames from the worker go to the
//! `SessionHandler`; its outbox goes back to the worker as length-prefixed frames.

use super::context::SignalingContext;
use super::messages::{CallState, ErrorCode, ServerMessage};
use super::session::{CloseRequest, SessionHandler};
use crate::media::command::{Command, ControlEvent, SessionInput};
use crate::media::ids::{RoomId, SessionId, TrackId};
use crate::media::quic::{close_code, frame};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

/// Messages queued for one client before it counts as not keeping up.
const OUTBOX: usize = 512;

/// Run the control loop: start a session task per opened QUIC connection, and feed audio levels
/// to their rooms.
pub async fn run_control(ctx: Arc<SignalingContext>, mut events: mpsc::Receiver<ControlEvent>) {
    while let Some(event) = events.recv().await {
        match event {
            ControlEvent::SessionOpened { session, worker, remote, inbox } => {
                tokio::spawn(run_quic_session(ctx.clone(), session, worker, remote, inbox));
            }
            ControlEvent::AudioLevels(levels) => {
                let mut by_room: HashMap<RoomId, Vec<(TrackId, f32)>> = HashMap::new();
                for (room, track, level) in levels {
                    by_room.entry(room).or_default().push((track, level));
                }
                for (room, levels) in by_room {
                    if let Some(room) = ctx.rooms.by_id(room) {
                        room.on_audio_levels(levels);
                    }
                }
            }
        }
    }
}

async fn run_quic_session(
    ctx: Arc<SignalingContext>,
    session: SessionId,
    worker: usize,
    remote: SocketAddr,
    mut inbox: mpsc::Receiver<SessionInput>,
) {
    let (outbox, mut outgoing) = mpsc::channel(OUTBOX);
    let mut handler = SessionHandler::new(ctx.clone(), session, worker, remote, outbox);
    let mut identity_events = ctx.directory.subscribe();
    let commands = ctx.workers[worker].commands.clone();
    let mut close: Option<CloseRequest> = None;
    let mut connection_gone = false;
    loop {
        tokio::select! {
            biased;
            input = inbox.recv() => match input {
                Some(SessionInput::Frame(bytes)) => {
                    if let Some(c) = handler.on_frame(&bytes) {
                        close = Some(c);
                        break;
                    }
                }
                Some(SessionInput::LayerChanged { subscription, layer }) => {
                    handler.send(ServerMessage::LayerChanged { subscription_id: subscription.0, layer });
                }
                Some(SessionInput::Malformed { reason }) => {
                    ctx.messages.with_label_values(&["malformed"]).inc();
                    handler.send(ServerMessage::error(None, ErrorCode::MessageTooLarge, reason));
                }
                Some(SessionInput::Closed { .. }) | None => {
                    connection_gone = true;
                    break;
                }
            },
            Some(msg) = outgoing.recv() => {
                handler.observe_outgoing(&msg);
                send(&commands, session, &msg).await;
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
    handler.leave(if connection_gone { "disconnected" } else { "left" });
    if !connection_gone {
        while let Ok(msg) = outgoing.try_recv() {
            send(&commands, session, &msg).await;
        }
        if let Some(c) = close {
            let _ = commands.send(Command::CloseSession { session, code: c.code, reason: c.reason }).await;
        }
    }
}

async fn send(commands: &mpsc::Sender<Command>, session: SessionId, msg: &ServerMessage) {
    let frame = frame(msg.to_json().as_bytes());
    let _ = commands.send(Command::SendSignal { session, frame }).await;
}
