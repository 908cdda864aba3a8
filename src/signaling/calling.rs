//! Calls between people over signaling: starting a call, answering or declining one that rings
//! on this device, hanging up, and the moderation requests of presenters (mute, remove).

use super::messages::{CallState, CallerInfo, EndReason, ErrorCode, ServerMessage};
use super::session::{Entry, Failure, SessionHandler, control_failure};
use crate::auth::Action;
use crate::calls::{AnswerError, CallError, Muter};
use crate::devices::{DeviceNotice, IncomingCall};
use crate::identity::{IdentityId, RawIdError};
use crate::media::ids::ParticipantId;
use crate::rooms::{RoomKey, RoomKind};
use std::sync::Arc;
use uuid::Uuid;

impl SessionHandler {
    /// Call the `targets`: a new call room with this participant in it; the callees' devices ring.
    pub(super) async fn start_call(&mut self, id: Option<u64>, targets: &[String]) -> Result<ServerMessage, Failure> {
        let r = self.registered()?;
        if !r.scopes.allows(Action::StartCall) {
            return Err((ErrorCode::TokenScopeInsufficient, "starting a call needs the voip scope".into()));
        }
        self.not_in_a_call()?;
        let max = self.ctx.calls.settings().max_targets;
        if targets.is_empty() || targets.len() > max {
            return Err((ErrorCode::BadRequest, format!("startCall needs 1 to {max} targets")));
        }
        let caller = r.identity();
        let mut callees: Vec<IdentityId> = Vec::new();
        for raw in targets {
            let callee = IdentityId::parse_raw(raw, &self.ctx.resource_id).map_err(|e| match e {
                RawIdError::ForeignResource => (ErrorCode::BadRequest, format!("{raw} belongs to another resource")),
                _ => (ErrorCode::BadRequest, format!("{raw} is not a communication user ID")),
            })?;
            if callee != caller && !callees.contains(&callee) {
                callees.push(callee);
            }
        }
        if callees.is_empty() {
            return Err((ErrorCode::BadRequest, "a call needs someone other than the caller".into()));
        }
        let call = Uuid::new_v4();
        let incoming = Arc::new(IncomingCall {
            call,
            caller,
            caller_raw_id: r.raw_id.clone(),
            caller_name: r.display_name.clone(),
            group: None,
        });
        let entry = Entry {
            key: RoomKey::Call(call),
            role: None,
            can_create: true,
            display_name: None,
            state: CallState::Connecting,
            call: Some(call),
        };
        let joined = self.enter(id, entry).await?;
        let room = self.joined()?.room.clone();
        self.ctx.calls.start(incoming, callees, room);
        tracing::info!(session = %self.session, %call, "call started");
        Ok(joined)
    }

    /// Answer a call ringing on this device: the first device of the callee to accept joins.
    pub(super) async fn accept_call(&mut self, id: Option<u64>, call_id: &str) -> Result<ServerMessage, Failure> {
        let call = parse_call_id(call_id)?;
        let identity = self.registered()?.identity();
        self.not_in_a_call()?;
        // A 1:1 call's own room, or the group call an invitation rang this device into.
        let key = self.ctx.calls.accept(call, identity, self.session).await.map_err(call_failure)?;
        let call = matches!(key, RoomKey::Call(_)).then_some(call);
        let entry = Entry { key, role: None, can_create: false, display_name: None, state: CallState::Connected, call };
        self.enter(id, entry).await.map_err(|(code, message)| match code {
            ErrorCode::CallNotFound => (ErrorCode::CallEnded, "the call ended before it was answered".into()),
            _ => (code, message),
        })
    }

    /// Decline a call ringing on this device (for every device of this identity).
    pub(super) async fn reject_call(&mut self, id: Option<u64>, call_id: &str) -> Result<ServerMessage, Failure> {
        let call = parse_call_id(call_id)?;
        let identity = self.registered()?.identity();
        self.ctx.calls.decline(call, identity, self.session).await.map_err(call_failure)?;
        Ok(ServerMessage::Ok { id })
    }

    /// Leave the call; with `for_everyone`, end it for all (any party of a 1:1 call; a presenter
    /// in a room or group call).
    pub(super) async fn hang_up(&mut self, for_everyone: bool) -> Result<(), Failure> {
        let j = self.joined()?;
        if for_everyone {
            match (j.call, j.caps.moderate) {
                (Some(call), _) => {
                    // The call may have ended a moment ago; leaving is all that is left then.
                    let _ = self.ctx.calls.end(call, EndReason::HungUp).await;
                }
                (None, true) => {
                    let (room, me) = (j.room.clone(), j.participant);
                    for member in room.members().into_iter().filter(|m| m.id != me) {
                        match self.ctx.live.remove(&room, member.id, EndReason::HungUp).await {
                            Ok(()) => {}
                            Err(e) if control_failure(&e).0 == ErrorCode::ParticipantNotFound => {}
                            Err(e) => return Err(control_failure(&e)),
                        }
                    }
                }
                (None, false) => {
                    return Err((ErrorCode::NotAllowed, "only a presenter may end the call for everyone".into()));
                }
            }
        }
        self.leave(EndReason::HungUp).await;
        Ok(())
    }

    /// A presenter mutes another participant's audio.
    pub(super) async fn mute_participant(
        &mut self,
        id: Option<u64>,
        participant_id: u64,
    ) -> Result<ServerMessage, Failure> {
        let (room, me) = self.moderator()?;
        self.ctx
            .live
            .mute_audio(&room, ParticipantId(participant_id), Muter::Member(me))
            .await
            .map_err(|e| control_failure(&e))?;
        Ok(ServerMessage::Ok { id })
    }

    /// A presenter removes another participant from the call.
    pub(super) async fn remove_participant(
        &mut self,
        id: Option<u64>,
        participant_id: u64,
    ) -> Result<ServerMessage, Failure> {
        let (room, me) = self.moderator()?;
        if ParticipantId(participant_id) == me {
            return Err((ErrorCode::BadRequest, "use leave or hangUp to leave".into()));
        }
        self.ctx
            .live
            .remove(&room, ParticipantId(participant_id), EndReason::RemovedFromCall)
            .await
            .map_err(|e| control_failure(&e))?;
        Ok(ServerMessage::Ok { id })
    }

    fn moderator(&self) -> Result<(Arc<crate::rooms::Room>, ParticipantId), Failure> {
        let j = self.joined()?;
        if !j.caps.moderate || !matches!(j.room.kind, RoomKind::Room | RoomKind::Meeting) {
            return Err((ErrorCode::NotAllowed, "only a presenter may mute or remove others".into()));
        }
        Ok((j.room.clone(), j.participant))
    }

    /// A notice for this device: a call rings, or stopped ringing.
    pub fn on_notice(&mut self, notice: DeviceNotice) {
        let msg = match notice {
            DeviceNotice::IncomingCall(call) => ServerMessage::IncomingCall {
                call_id: call.call.to_string(),
                caller: CallerInfo {
                    identity: call.caller_raw_id.to_string(),
                    display_name: call.caller_name.as_deref().map(str::to_owned),
                },
                group_id: call.group.map(|g| g.to_string()),
            },
            DeviceNotice::IncomingCallEnded { call, reason } => ServerMessage::IncomingCallEnded {
                call_id: call.to_string(),
                code: reason,
                reason: reason.describe().to_owned(),
            },
        };
        self.send(msg);
    }
}

fn parse_call_id(call_id: &str) -> Result<Uuid, Failure> {
    Uuid::parse_str(call_id).map_err(|_| (ErrorCode::BadRequest, "callId must be a UUID".into()))
}

fn call_failure(e: CallError) -> Failure {
    let code = match e {
        CallError::NotFound => ErrorCode::CallNotFound,
        CallError::Answer(AnswerError::Ended | AnswerError::NotRinging | AnswerError::AlreadyRinging) => {
            ErrorCode::CallEnded
        }
        CallError::Answer(AnswerError::NotInvited) => ErrorCode::NotAllowed,
        CallError::Answer(AnswerError::AnsweredElsewhere) => ErrorCode::AnsweredElsewhere,
    };
    (code, e.to_string())
}
