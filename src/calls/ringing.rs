//! `CallAttempt`: the state machine of one outgoing call (1:1, or a small group ring), without
//! I/O. Inputs (started, accepted, declined, a member left, the ringing timed out) go in; what
//! must happen comes out as `Effect`s (stop ringing some devices, announce a call state). The
//! call task (`calls::CallRegistry`) does the I/O; the rules live here and are unit-tested.
//!
//! Rules: every device of every callee rings; the first device of a callee to accept wins and
//! that callee's other devices are told it was answered elsewhere; the call is `Connected` once
//! any callee accepts. It ends `Unreachable` when no callee has a device, `Declined` when every
//! callee declined, `Cancelled` when the caller hangs up first, `NoAnswer` at the ringing
//! timeout, and `HungUp` when, connected, fewer than two participants are left.

use crate::identity::IdentityId;
use crate::media::ids::SessionId;
use crate::rooms::{CallState, EndReason};
use std::time::{Duration, Instant};

/// Where one callee is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalleeState {
    Ringing,
    /// No connected device when the call started.
    Unreachable,
    Declined,
    /// Did not answer before the timeout.
    NoAnswer,
    Answered(SessionId),
    /// The call ended while this callee was still ringing.
    Stopped,
    /// The invitation was withdrawn while it rang (`cancel_invite`).
    Cancelled,
}

/// The call as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Created; no device was rung yet.
    Connecting,
    Ringing,
    Connected,
    Ended(EndReason),
}

/// Something the call task must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Tell `identity`'s devices (all but `except`) that the call stopped ringing for them.
    StopRinging { identity: IdentityId, except: Option<SessionId>, reason: EndReason },
    /// Announce a call state to the call's participants (`Disconnected` ends the call).
    State(CallState, Option<EndReason>),
}

/// Why a callee's accept or decline is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    #[error("the call has ended")]
    Ended,
    #[error("this identity was not called")]
    NotInvited,
    #[error("the call was answered on another device")]
    AnsweredElsewhere,
    #[error("this identity already declined or stopped ringing")]
    NotRinging,
    #[error("this identity is already being rung")]
    AlreadyRinging,
}

/// One callee and until when it rings.
#[derive(Debug, Clone, Copy)]
struct Callee {
    id: IdentityId,
    state: CalleeState,
    /// When its ringing times out (meaningful while `Ringing`): the call's deadline for the first
    /// callees, its own for one invited later.
    deadline: Instant,
}

/// One outgoing call.
#[derive(Debug, Clone)]
pub struct CallAttempt {
    pub caller: IdentityId,
    callees: Vec<Callee>,
    phase: Phase,
    started: Instant,
    /// How long it rang before someone answered.
    ring_time: Option<Duration>,
}

impl CallAttempt {
    pub fn new(
        caller: IdentityId,
        callees: impl IntoIterator<Item = IdentityId>,
        now: Instant,
        ring: Duration,
    ) -> Self {
        let mut list: Vec<Callee> = Vec::new();
        for c in callees {
            if c != caller && !list.iter().any(|callee| callee.id == c) {
                list.push(Callee { id: c, state: CalleeState::Ringing, deadline: now + ring });
            }
        }
        Self { caller, callees: list, phase: Phase::Connecting, started: now, ring_time: None }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// When the next callee's ringing times out; `None` while nobody rings.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.callees.iter().filter(|c| c.state == CalleeState::Ringing).map(|c| c.deadline).min()
    }

    /// How long the call rang before the first answer.
    pub fn ring_time(&self) -> Option<Duration> {
        self.ring_time
    }

    pub fn callee(&self, identity: IdentityId) -> Option<CalleeState> {
        self.callees.iter().find(|c| c.id == identity).map(|c| c.state)
    }

    /// Whether `identity` takes part (the caller or a callee).
    pub fn is_party(&self, identity: IdentityId) -> bool {
        identity == self.caller || self.callee(identity).is_some()
    }

    /// The devices were rung: `reached` says, per callee, whether any device got the ring.
    pub fn started(&mut self, reached: impl Fn(IdentityId) -> bool) -> Vec<Effect> {
        if self.phase != Phase::Connecting {
            return Vec::new();
        }
        for callee in &mut self.callees {
            if !reached(callee.id) {
                callee.state = CalleeState::Unreachable;
            }
        }
        if self.ringing().next().is_none() {
            return self.end(EndReason::Unreachable);
        }
        self.phase = Phase::Ringing;
        vec![Effect::State(CallState::Ringing, None)]
    }

    /// A device of `identity` accepts.
    pub fn accept(
        &mut self,
        identity: IdentityId,
        session: SessionId,
        now: Instant,
    ) -> Result<Vec<Effect>, AnswerError> {
        if matches!(self.phase, Phase::Ended(_)) {
            return Err(AnswerError::Ended);
        }
        let state = self.callee_mut(identity).ok_or(AnswerError::NotInvited)?;
        match *state {
            CalleeState::Ringing => *state = CalleeState::Answered(session),
            CalleeState::Answered(s) if s == session => return Ok(Vec::new()),
            CalleeState::Answered(_) => return Err(AnswerError::AnsweredElsewhere),
            _ => return Err(AnswerError::NotRinging),
        }
        let mut effects =
            vec![Effect::StopRinging { identity, except: Some(session), reason: EndReason::AnsweredElsewhere }];
        if self.phase != Phase::Connected {
            self.phase = Phase::Connected;
            self.ring_time = Some(now.saturating_duration_since(self.started));
            effects.push(Effect::State(CallState::Connected, None));
        }
        Ok(effects)
    }

    /// A device of `identity` declines (for all of that identity's devices).
    pub fn decline(&mut self, identity: IdentityId, session: SessionId) -> Result<Vec<Effect>, AnswerError> {
        if matches!(self.phase, Phase::Ended(_)) {
            return Err(AnswerError::Ended);
        }
        let state = self.callee_mut(identity).ok_or(AnswerError::NotInvited)?;
        if *state != CalleeState::Ringing {
            return Err(AnswerError::NotRinging);
        }
        *state = CalleeState::Declined;
        let mut effects = vec![Effect::StopRinging { identity, except: Some(session), reason: EndReason::Declined }];
        if self.phase != Phase::Connected && self.ringing().next().is_none() {
            effects.extend(self.end(EndReason::Declined));
        }
        Ok(effects)
    }

    /// A participant left the call's room; `remaining` participants are still in it.
    pub fn member_left(&mut self, identity: IdentityId, remaining: usize) -> Vec<Effect> {
        match self.phase {
            Phase::Connecting | Phase::Ringing if identity == self.caller => self.end(EndReason::Cancelled),
            Phase::Connected if remaining < 2 && self.ringing().next().is_none() => self.end(EndReason::HungUp),
            _ => Vec::new(),
        }
    }

    /// The ringing timeout passed.
    pub fn timed_out(&mut self, now: Instant) -> Vec<Effect> {
        if matches!(self.phase, Phase::Ended(_)) {
            return Vec::new();
        }
        let mut effects = Vec::new();
        for callee in &mut self.callees {
            if callee.state == CalleeState::Ringing && now >= callee.deadline {
                callee.state = CalleeState::NoAnswer;
                effects.push(Effect::StopRinging { identity: callee.id, except: None, reason: EndReason::NoAnswer });
            }
        }
        if self.phase != Phase::Connected && self.ringing().next().is_none() {
            effects.extend(self.end(EndReason::NoAnswer));
        }
        effects
    }

    /// Ring one more identity in a call that goes on (a service adding a participant): its
    /// devices ring until `now + ring`. Someone who declined, did not answer, left or was
    /// removed may be rung again.
    pub fn invite(&mut self, identity: IdentityId, now: Instant, ring: Duration) -> Result<Vec<Effect>, AnswerError> {
        if matches!(self.phase, Phase::Ended(_)) {
            return Err(AnswerError::Ended);
        }
        if identity == self.caller {
            return Err(AnswerError::NotInvited);
        }
        let deadline = now + ring;
        match self.callees.iter_mut().find(|c| c.id == identity) {
            Some(c) if c.state == CalleeState::Ringing => return Err(AnswerError::AlreadyRinging),
            Some(c) => {
                c.state = CalleeState::Ringing;
                c.deadline = deadline;
            }
            None => self.callees.push(Callee { id: identity, state: CalleeState::Ringing, deadline }),
        }
        Ok(Vec::new())
    }

    /// No device of an invited `identity` could be rung.
    pub fn not_reached(&mut self, identity: IdentityId) -> Vec<Effect> {
        if let Some(state) = self.callee_mut(identity).filter(|s| **s == CalleeState::Ringing) {
            *state = CalleeState::Unreachable;
        }
        if matches!(self.phase, Phase::Connecting | Phase::Ringing) && self.ringing().next().is_none() {
            return self.end(EndReason::Unreachable);
        }
        Vec::new()
    }

    /// Withdraw the invitation of a callee that still rings; its devices stop (`Cancelled`). A
    /// call nobody answered yet ends when nobody else rings.
    pub fn cancel_invite(&mut self, identity: IdentityId) -> Result<Vec<Effect>, AnswerError> {
        if matches!(self.phase, Phase::Ended(_)) {
            return Err(AnswerError::Ended);
        }
        let state = self.callee_mut(identity).ok_or(AnswerError::NotInvited)?;
        if *state != CalleeState::Ringing {
            return Err(AnswerError::NotRinging);
        }
        *state = CalleeState::Cancelled;
        let mut effects = vec![Effect::StopRinging { identity, except: None, reason: EndReason::Cancelled }];
        if self.phase != Phase::Connected && self.ringing().next().is_none() {
            effects.extend(self.end(EndReason::Cancelled));
        }
        Ok(effects)
    }

    /// A connected call with `remaining` participants and nobody ringing any more ends when fewer
    /// than two are left (checked after an invitation stops ringing).
    pub fn check_remaining(&mut self, remaining: usize) -> Vec<Effect> {
        match self.phase {
            Phase::Connected if remaining < 2 && self.ringing().next().is_none() => self.end(EndReason::HungUp),
            _ => Vec::new(),
        }
    }

    /// End the call for everyone (hang-up for all, or the caller going away before an answer).
    pub fn end(&mut self, reason: EndReason) -> Vec<Effect> {
        if matches!(self.phase, Phase::Ended(_)) {
            return Vec::new();
        }
        let mut effects = Vec::new();
        // Devices still ringing learn why they stop: the caller gave up, or it timed out.
        let ring_reason = if reason == EndReason::HungUp { EndReason::Cancelled } else { reason };
        for callee in &mut self.callees {
            if callee.state == CalleeState::Ringing {
                callee.state = CalleeState::Stopped;
                effects.push(Effect::StopRinging { identity: callee.id, except: None, reason: ring_reason });
            }
        }
        self.phase = Phase::Ended(reason);
        effects.push(Effect::State(CallState::Disconnected, Some(reason)));
        effects
    }

    fn ringing(&self) -> impl Iterator<Item = IdentityId> + '_ {
        self.callees.iter().filter(|c| c.state == CalleeState::Ringing).map(|c| c.id)
    }

    fn callee_mut(&mut self, identity: IdentityId) -> Option<&mut CalleeState> {
        self.callees.iter_mut().find(|c| c.id == identity).map(|c| &mut c.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    const RING: Duration = Duration::from_secs(30);

    fn id() -> IdentityId {
        IdentityId(Uuid::new_v4())
    }

    fn ended(effects: &[Effect]) -> Option<EndReason> {
        effects.iter().find_map(|e| match e {
            Effect::State(CallState::Disconnected, r) => *r,
            _ => None,
        })
    }

    #[test]
    fn first_accept_wins_and_the_other_devices_are_told() {
        let (caller, bob) = (id(), id());
        let t0 = Instant::now();
        let mut call = CallAttempt::new(caller, [bob], t0, RING);
        assert_eq!(call.started(|_| true), vec![Effect::State(CallState::Ringing, None)]);
        let (phone, laptop) = (SessionId(1), SessionId(2));
        let effects = call.accept(bob, phone, t0 + Duration::from_secs(2)).expect("accept");
        assert_eq!(
            effects,
            vec![
                Effect::StopRinging { identity: bob, except: Some(phone), reason: EndReason::AnsweredElsewhere },
                Effect::State(CallState::Connected, None),
            ]
        );
        assert_eq!(call.ring_time(), Some(Duration::from_secs(2)));
        assert_eq!(call.accept(bob, laptop, t0).err(), Some(AnswerError::AnsweredElsewhere));
        assert_eq!(call.accept(bob, phone, t0), Ok(vec![]), "accepting twice is harmless");
        assert_eq!(call.accept(id(), laptop, t0).err(), Some(AnswerError::NotInvited));
        assert_eq!(call.phase(), Phase::Connected);
        // One hangs up: the other is alone, the call ends for both.
        assert_eq!(ended(&call.member_left(bob, 1)), Some(EndReason::HungUp));
        assert_eq!(call.accept(bob, phone, t0).err(), Some(AnswerError::Ended));
    }

    #[test]
    fn unreachable_when_no_callee_has_a_device() {
        let (caller, bob) = (id(), id());
        let mut call = CallAttempt::new(caller, [bob], Instant::now(), RING);
        assert_eq!(ended(&call.started(|_| false)), Some(EndReason::Unreachable));
        assert_eq!(call.callee(bob), Some(CalleeState::Unreachable));
    }

    #[test]
    fn decline_ends_a_1to1_call_but_not_a_group_ring_with_others_ringing() {
        let (caller, bob, carol) = (id(), id(), id());
        let t0 = Instant::now();
        let mut one = CallAttempt::new(caller, [bob], t0, RING);
        one.started(|_| true);
        let effects = one.decline(bob, SessionId(5)).expect("decline");
        assert_eq!(
            effects[0],
            Effect::StopRinging { identity: bob, except: Some(SessionId(5)), reason: EndReason::Declined }
        );
        assert_eq!(ended(&effects), Some(EndReason::Declined));

        let mut group = CallAttempt::new(caller, [bob, carol], t0, RING);
        group.started(|_| true);
        assert_eq!(ended(&group.decline(bob, SessionId(5)).expect("decline")), None, "carol still rings");
        assert_eq!(group.decline(bob, SessionId(6)).err(), Some(AnswerError::NotRinging));
        assert_eq!(ended(&group.decline(carol, SessionId(7)).expect("decline")), Some(EndReason::Declined));
    }

    #[test]
    fn the_caller_hanging_up_while_ringing_cancels() {
        let (caller, bob, carol) = (id(), id(), id());
        let mut call = CallAttempt::new(caller, [bob, carol], Instant::now(), RING);
        call.started(|who| who == bob);
        let effects = call.member_left(caller, 0);
        assert_eq!(
            effects,
            vec![
                Effect::StopRinging { identity: bob, except: None, reason: EndReason::Cancelled },
                Effect::State(CallState::Disconnected, Some(EndReason::Cancelled)),
            ],
            "only bob was ringing; carol was unreachable"
        );
        assert!(call.member_left(caller, 0).is_empty(), "ended once");
    }

    #[test]
    fn nobody_answering_times_out() {
        let (caller, bob) = (id(), id());
        let t0 = Instant::now();
        let mut call = CallAttempt::new(caller, [bob], t0, RING);
        call.started(|_| true);
        assert!(call.timed_out(t0 + RING - Duration::from_millis(1)).is_empty(), "not yet");
        let effects = call.timed_out(t0 + RING);
        assert_eq!(effects[0], Effect::StopRinging { identity: bob, except: None, reason: EndReason::NoAnswer });
        assert_eq!(ended(&effects), Some(EndReason::NoAnswer));
        assert_eq!(call.callee(bob), Some(CalleeState::NoAnswer));
    }

    #[test]
    fn a_connected_group_ring_stops_the_late_callee_at_the_timeout_but_goes_on() {
        let (caller, bob, carol) = (id(), id(), id());
        let t0 = Instant::now();
        let mut call = CallAttempt::new(caller, [bob, carol, caller, bob], t0, RING);
        call.started(|_| true);
        call.accept(bob, SessionId(1), t0).expect("accept");
        let effects = call.timed_out(t0 + RING);
        assert_eq!(effects, vec![Effect::StopRinging { identity: carol, except: None, reason: EndReason::NoAnswer }]);
        assert_eq!(call.phase(), Phase::Connected);
        assert!(call.member_left(carol, 2).is_empty());
        assert!(!call.is_party(id()) && call.is_party(caller) && call.is_party(carol));
    }

    #[test]
    fn an_invitation_rings_on_its_own_timeout_in_a_call_that_goes_on() {
        let (service, bob, carol) = (id(), id(), id());
        let t0 = Instant::now();
        let mut call = CallAttempt::new(service, [bob], t0, RING);
        call.started(|_| true);
        call.accept(bob, SessionId(1), t0).expect("accept");
        assert_eq!(call.next_deadline(), None, "nobody rings");
        let short = Duration::from_secs(5);
        call.invite(carol, t0 + Duration::from_secs(1), short).expect("invite");
        assert_eq!(call.invite(carol, t0, short).err(), Some(AnswerError::AlreadyRinging));
        assert_eq!(call.invite(service, t0, short).err(), Some(AnswerError::NotInvited));
        assert_eq!(call.next_deadline(), Some(t0 + Duration::from_secs(6)));
        assert!(call.timed_out(t0 + Duration::from_secs(5)).is_empty(), "not yet");
        let effects = call.timed_out(t0 + Duration::from_secs(6));
        assert_eq!(effects, vec![Effect::StopRinging { identity: carol, except: None, reason: EndReason::NoAnswer }]);
        assert_eq!(call.callee(carol), Some(CalleeState::NoAnswer));
        assert_eq!(call.phase(), Phase::Connected, "the call goes on");
        // Rung again, she answers.
        call.invite(carol, t0 + Duration::from_secs(7), short).expect("invite again");
        call.accept(carol, SessionId(2), t0 + Duration::from_secs(8)).expect("accept");
        assert_eq!(call.callee(carol), Some(CalleeState::Answered(SessionId(2))));
    }

    #[test]
    fn a_cancelled_invitation_stops_ringing_and_the_call_ends_when_nobody_is_left() {
        let (service, bob, carol) = (id(), id(), id());
        let t0 = Instant::now();
        let mut call = CallAttempt::new(service, [bob], t0, RING);
        call.started(|_| true);
        call.accept(bob, SessionId(1), t0).expect("accept");
        call.invite(carol, t0, RING).expect("invite");
        assert!(call.member_left(bob, 1).is_empty(), "carol still rings");
        assert_eq!(
            call.cancel_invite(carol).expect("cancel"),
            vec![Effect::StopRinging { identity: carol, except: None, reason: EndReason::Cancelled }]
        );
        assert_eq!(call.cancel_invite(carol).err(), Some(AnswerError::NotRinging));
        assert_eq!(call.callee(carol), Some(CalleeState::Cancelled));
        assert_eq!(ended(&call.check_remaining(1)), Some(EndReason::HungUp), "only the service is left");
    }
}
