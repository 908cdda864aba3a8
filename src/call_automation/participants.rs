//! Participants of a call connection: add (ring one more identity into the call, with its
//! invitation timeout and cancel), remove, mute.

use super::connection::{ConnectionState, PendingInvitation, failure_result};
use super::events::{self, ResultInformation};
use super::*;

impl CallAutomation {
    /// `participants:add`: ring one more identity into the call. Returns the invitation ID; the
    /// outcome arrives as `AddParticipantSucceeded` / `AddParticipantFailed` (or
    /// `CancelAddParticipantSucceeded`).
    pub async fn add_participant(&self, id: Uuid, req: AddParticipant) -> Result<String, AutomationError> {
        let result = self.add_participant_inner(id, req).await;
        self.shared.metrics.count("add_participant", &result);
        result
    }

    async fn add_participant_inner(&self, id: Uuid, req: AddParticipant) -> Result<String, AutomationError> {
        let conn = self.get(id)?;
        let identity = self.parse_user("participantToAdd", &req.raw_id)?;
        if conn.state() != ConnectionState::Connected {
            return Err(AutomationError::NotConnected);
        }
        let ctx = &self.shared.signaling;
        if ctx.rooms.get(&conn.kind.room_key()).is_some_and(|room| !room.members_of(identity).is_empty()) {
            return Err(AutomationError::AlreadyInCall);
        }
        if conn.invited(identity) {
            return Err(AutomationError::bad("participantToAdd", "this participant is already being invited"));
        }
        let ring = req.invitation_timeout.filter(|t| !t.is_zero()).unwrap_or(self.shared.settings.ring_timeout);
        let (call, invitation) = match conn.kind {
            ConnectionKind::Call(call) => {
                let invitation = ctx.calls.invite(call, identity, ring).await.map_err(|e| match e {
                    CallError::Answer(AnswerError::AlreadyRinging) => {
                        AutomationError::bad("participantToAdd", "this participant is already being invited")
                    }
                    e => AutomationError::Call(e),
                })?;
                (call, invitation)
            }
            // Into a group call: an invitation with a call ID of its own, from the leg's identity;
            // the device that accepts joins the group call.
            ConnectionKind::Group(group) => {
                let incoming = Arc::new(crate::devices::IncomingCall {
                    call: Uuid::new_v4(),
                    caller: conn.source,
                    caller_raw_id: conn.source_raw_id.as_str().into(),
                    caller_name: conn.source_display_name.as_deref().map(Into::into),
                    group: Some(group),
                });
                let call = incoming.call;
                (call, ctx.calls.invite_to_group(incoming, group, identity, ring))
            }
            // A room admits whom its participant list names, with the role it gives them.
            ConnectionKind::Room(_) => {
                return Err(AutomationError::NotSupported(
                    "adding participants to a room call is not supported: add them to the room (Rooms API) and they join it",
                ));
            }
        };
        let invitation_id = Uuid::new_v4().to_string();
        let pending = PendingInvitation {
            identity,
            call,
            raw_id: req.raw_id,
            operation_context: req.operation_context,
            cancel_context: None,
        };
        conn.add_invitation(invitation_id.clone(), pending);
        let waiting = invitation_id.clone();
        tokio::spawn(async move {
            let outcome = invitation.await.unwrap_or(CalleeState::Stopped);
            let Some(pending) = conn.take_invitation(&waiting) else { return };
            let base = conn.event_base();
            let context = pending.operation_context.as_deref();
            let event = match (outcome, pending.cancel_context) {
                (CalleeState::Answered(_), _) => {
                    let ok = ResultInformation::new(200, 0, "The participant was added");
                    (
                        "AddParticipantSucceeded",
                        events::add_participant(&base, true, context, &pending.raw_id, &waiting, ok),
                    )
                }
                (CalleeState::Cancelled, Some(cancel_context)) => (
                    "CancelAddParticipantSucceeded",
                    events::cancel_add_participant_succeeded(&base, cancel_context.as_deref(), &waiting),
                ),
                (other, _) => {
                    let result = failure_result(callee_end_reason(other));
                    (
                        "AddParticipantFailed",
                        events::add_participant(&base, false, context, &pending.raw_id, &waiting, result),
                    )
                }
            };
            conn.emit(event.0, event.1);
        });
        Ok(invitation_id)
    }

    /// `participants:cancelAddParticipant`: stop ringing an invitation.
    pub async fn cancel_add_participant(
        &self,
        id: Uuid,
        invitation_id: &str,
        operation_context: Option<String>,
    ) -> Result<(), AutomationError> {
        let result = async {
            let conn = self.get(id)?;
            let (identity, call) =
                conn.cancel_invitation(invitation_id, operation_context).ok_or(AutomationError::InvitationNotFound)?;
            match self.shared.signaling.calls.cancel_invite(call, identity).await {
                Ok(()) => Ok(()),
                Err(CallError::Answer(AnswerError::NotRinging | AnswerError::NotInvited) | CallError::NotFound) => {
                    Err(AutomationError::InvitationNotFound)
                }
                Err(e) => Err(AutomationError::Call(e)),
            }
        }
        .await;
        self.shared.metrics.count("cancel_add_participant", &result);
        result
    }

    /// `participants:remove`: the participant leaves the call (`RemovedFromCall`), through the
    /// removal path of the Rooms API.
    pub async fn remove_participant(
        &self,
        id: Uuid,
        raw_id: &str,
        operation_context: Option<String>,
    ) -> Result<(), AutomationError> {
        let result = async {
            let conn = self.get(id)?;
            let identity = self.parse_user("participantToRemove", raw_id)?;
            let ctx = &self.shared.signaling;
            let room = ctx.rooms.get(&conn.kind.room_key()).ok_or(AutomationError::ParticipantNotInCall)?;
            let leg = ParticipantId(conn.leg_participant());
            let members: Vec<_> = room.members_of(identity).into_iter().filter(|m| m.id != leg).collect();
            if members.is_empty() {
                return Err(AutomationError::ParticipantNotInCall);
            }
            for member in members {
                match ctx.live.remove(&room, member.id, EndReason::RemovedFromCall).await {
                    Ok(()) | Err(ControlError::Room(crate::rooms::RoomError::ParticipantNotFound)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let event = events::remove_participant_succeeded(&conn.event_base(), operation_context.as_deref(), raw_id);
            conn.emit("RemoveParticipantSucceeded", event);
            Ok(())
        }
        .await;
        self.shared.metrics.count("remove_participant", &result);
        result
    }

    /// `participants:mute`: mute the participants' audio server-side (the presenter mute path).
    pub async fn mute(&self, id: Uuid, raw_ids: &[String]) -> Result<(), AutomationError> {
        let result = async {
            let conn = self.get(id)?;
            if raw_ids.is_empty() {
                return Err(AutomationError::bad("targetParticipants", "name at least one participant"));
            }
            let identities =
                raw_ids.iter().map(|r| self.parse_user("targetParticipants", r)).collect::<Result<Vec<_>, _>>()?;
            let ctx = &self.shared.signaling;
            let room = ctx.rooms.get(&conn.kind.room_key()).ok_or(AutomationError::ParticipantNotInCall)?;
            let leg = ParticipantId(conn.leg_participant());
            for identity in identities {
                let members: Vec<_> = room.members_of(identity).into_iter().filter(|m| m.id != leg).collect();
                if members.is_empty() {
                    return Err(AutomationError::ParticipantNotInCall);
                }
                for member in members {
                    ctx.live.mute_audio(&room, member.id, Muter::Service(leg)).await?;
                }
            }
            Ok(())
        }
        .await;
        self.shared.metrics.count("mute", &result);
        result
    }
}
