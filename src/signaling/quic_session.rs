//! QUIC sessions: the worker delivers signaling frames of a connection's first stream; replies go
//! back to it as length-prefixed frames. Also the control loop that starts them.

use super::context::SignalingContext;
use super::messages::ServerMessage;
use super::runner::{Carrier, Incoming, run_session};
use super::session::{CloseRequest, SessionHandler, Transport};
use crate::media::command::{Command, ControlEvent, SessionInput};
use crate::media::ids::{RoomId, SessionId, TrackId};
use crate::media::plane::WorkerHandle;
use crate::media::quic::frame;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Run the control loop: start a session task per opened QUIC connection, and feed audio levels
/// to their rooms.
pub async fn run_control(ctx: Arc<SignalingContext>, mut events: mpsc::Receiver<ControlEvent>) {
    while let Some(event) = events.recv().await {
        match event {
            ControlEvent::SessionOpened { session, worker, remote, inbox } => {
                let handler = SessionHandler::new(ctx.clone(), session, worker, remote, Transport::Quic);
                let carrier = QuicCarrier { inbox, worker: ctx.workers[worker].clone(), session };
                tokio::spawn(run_session(ctx.clone(), handler, carrier));
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

/// Signaling over a QUIC connection, relayed by the worker that owns it.
struct QuicCarrier {
    inbox: crate::lean_queue::Receiver<SessionInput>,
    worker: WorkerHandle,
    session: SessionId,
}

impl Carrier for QuicCarrier {
    async fn next(&mut self) -> Incoming {
        match self.inbox.recv().await {
            Some(SessionInput::Frame(bytes)) => Incoming::Frame(bytes),
            // The connection itself is gone: nothing to tell the client.
            Some(SessionInput::Closed { .. }) | None => Incoming::Gone,
            Some(other) => Incoming::Worker(other),
        }
    }

    async fn send(&mut self, msg: &ServerMessage) -> bool {
        let frame = frame(msg.to_json().as_bytes());
        self.worker.send(Command::SendSignal { session: self.session, frame }).await.is_ok()
    }

    async fn close(&mut self, reason: Option<CloseRequest>) {
        if let Some(c) = reason {
            // A stopped worker has closed the connection already.
            let _ =
                self.worker.send(Command::CloseSession { session: self.session, code: c.code, reason: c.reason }).await;
        }
    }
}
