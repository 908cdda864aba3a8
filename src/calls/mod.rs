//! Calls between people: 1:1 calls (and small group rings) that ring every device of the callee,
//! and `LiveCalls`, which applies role changes and removals to live rooms and the media plane.
//!
//! A call is a room (`RoomKey::Call`) plus a task that owns its `CallAttempt` (the ringing state
//! machine). The caller is in the room from the start; the task rings the callees' devices,
//! takes accepts and declines, watches the room's events (a participant leaving), times the
//! ringing out, and announces the call state to the room, whose members' sessions act on it.

mod live;
pub mod ringing;

pub use live::{ControlError, LiveCalls, Muter};
pub use ringing::{AnswerError, CalleeState};

use crate::devices::{DeviceNotice, DeviceRegistry, IncomingCall};
use crate::identity::IdentityId;
use crate::media::ids::SessionId;
use crate::metrics::counter_vec;
use crate::rooms::{EndReason, Room, RoomEvent, RoomKey};
use dashmap::DashMap;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts};
use ringing::{CallAttempt, Effect, Phase};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// Inputs queued for one call's task.
const CALL_INPUTS: usize = 64;
/// Room events queued for one call's task.
const CALL_EVENTS: usize = 256;

/// Limits for calls.
#[derive(Debug, Clone, Copy)]
pub struct CallSettings {
    pub ring_timeout: Duration,
    pub max_targets: usize,
}

/// Why a call request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    #[error("no such call (it ended, or never existed)")]
    NotFound,
    #[error(transparent)]
    Answer(#[from] AnswerError),
}

/// `switchboard_calls{state}`, `switchboard_calls_ended_total{reason}`,
/// `switchboard_call_ring_seconds`.
pub struct CallMetrics {
    calls: IntGaugeVec,
    ended: IntCounterVec,
    ring: Histogram,
}

impl CallMetrics {
    pub fn new(registry: &prometheus::Registry) -> Self {
        let calls = IntGaugeVec::new(Opts::new("calls", "Live 1:1 calls by state (ringing, connected)"), &["state"])
            .expect("constant gauge options are valid");
        registry.register(Box::new(calls.clone())).expect("registered once");
        let ring = Histogram::with_opts(
            HistogramOpts::new("call_ring_seconds", "Time from starting a call to its first answer")
                .buckets(vec![0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0]),
        )
        .expect("constant histogram options are valid");
        registry.register(Box::new(ring.clone())).expect("registered once");
        Self {
            calls,
            ended: counter_vec(registry, "calls_ended_total", "1:1 calls ended, by reason", &["reason"]),
            ring,
        }
    }

    fn gauge(&self, phase: Phase) -> Option<prometheus::IntGauge> {
        match phase {
            Phase::Ringing => Some(self.calls.with_label_values(&["ringing"])),
            Phase::Connected => Some(self.calls.with_label_values(&["connected"])),
            Phase::Connecting | Phase::Ended(_) => None,
        }
    }
}

enum CallInput {
    Accept { identity: IdentityId, session: SessionId, reply: oneshot::Sender<Result<(), AnswerError>> },
    Decline { identity: IdentityId, session: SessionId, reply: oneshot::Sender<Result<(), AnswerError>> },
    End { reason: EndReason },
    Invite { identity: IdentityId, ring: Duration, reply: oneshot::Sender<Result<Invitation, AnswerError>> },
    CancelInvite { identity: IdentityId, reply: oneshot::Sender<Result<(), AnswerError>> },
}

/// How an invitation (`CallRegistry::invite`) ended for its callee: `Answered`, `Declined`,
/// `NoAnswer`, `Unreachable`, `Cancelled`, or `Stopped` (the call ended first).
pub type Invitation = oneshot::Receiver<CalleeState>;

struct CallHandle {
    inputs: mpsc::Sender<CallInput>,
    /// The room an answer joins: the call's own, or the group call an invitation rings into.
    room: RoomKey,
    /// The caller and the callees, invited ones too: who may (re)join the call's room.
    parties: Vec<IdentityId>,
}

/// Every live call.
pub struct CallRegistry {
    calls: DashMap<Uuid, CallHandle>,
    devices: Arc<DeviceRegistry>,
    settings: CallSettings,
    metrics: CallMetrics,
}

impl CallRegistry {
    pub fn new(devices: Arc<DeviceRegistry>, settings: CallSettings, metrics: CallMetrics) -> Self {
        Self { calls: DashMap::new(), devices, settings, metrics }
    }

    pub fn settings(&self) -> CallSettings {
        self.settings
    }

    /// Start ringing `targets` for a call whose `room` the caller has just joined.
    pub fn start(self: &Arc<Self>, caller: Arc<IncomingCall>, targets: Vec<IdentityId>, room: Arc<Room>) {
        let attempt =
            CallAttempt::new(caller.caller, targets.iter().copied(), Instant::now(), self.settings.ring_timeout);
        let parties: Vec<IdentityId> = std::iter::once(caller.caller).chain(targets).collect();
        let (inputs, inputs_rx) = mpsc::channel(CALL_INPUTS);
        let (observer, events) = mpsc::channel(CALL_EVENTS);
        room.observe(observer);
        self.calls.insert(caller.call, CallHandle { inputs: inputs.clone(), room: room.key.clone(), parties });
        // The caller may have gone between joining and the observer above.
        if room.members_of(caller.caller).is_empty() {
            let _ = inputs.try_send(CallInput::End { reason: EndReason::Cancelled });
        }
        tokio::spawn(self.clone().run(caller, attempt, room, inputs_rx, events));
    }

    /// Whether `identity` is the caller or a callee of a live call (may join its room).
    pub fn is_party(&self, call: Uuid, identity: IdentityId) -> bool {
        self.calls.get(&call).is_some_and(|c| c.parties.contains(&identity))
    }

    /// Answer a call ringing on `session`; returns the room the answer joins.
    pub async fn accept(&self, call: Uuid, identity: IdentityId, session: SessionId) -> Result<RoomKey, CallError> {
        let room = self.calls.get(&call).map(|c| c.room.clone()).ok_or(CallError::NotFound)?;
        self.ask(call, |reply| CallInput::Accept { identity, session, reply }).await?;
        Ok(room)
    }

    /// Ring `identity` into the group call `group` (a service adding a participant to a group
    /// call it is in) for `ring`: its devices get `incoming` (a call ID of its own), and the
    /// first to accept joins the group call. The group call itself is not touched: declining,
    /// not answering or cancelling ends the invitation only.
    pub fn invite_to_group(
        self: &Arc<Self>,
        incoming: Arc<IncomingCall>,
        group: Uuid,
        identity: IdentityId,
        ring: Duration,
    ) -> Invitation {
        let attempt = CallAttempt::new(incoming.caller, [identity], Instant::now(), ring);
        let (inputs, inputs_rx) = mpsc::channel(CALL_INPUTS);
        let parties = vec![incoming.caller, identity];
        self.calls.insert(incoming.call, CallHandle { inputs, room: RoomKey::Group(group), parties });
        let (tx, rx) = oneshot::channel();
        tokio::spawn(self.clone().run_invitation(incoming, identity, attempt, inputs_rx, tx));
        rx
    }

    pub async fn decline(&self, call: Uuid, identity: IdentityId, session: SessionId) -> Result<(), CallError> {
        self.ask(call, |reply| CallInput::Decline { identity, session, reply }).await
    }

    /// End a call for everyone (a party's `hangUp` with `forEveryone`).
    pub async fn end(&self, call: Uuid, reason: EndReason) -> Result<(), CallError> {
        let inputs = self.inputs(call)?;
        inputs.send(CallInput::End { reason }).await.map_err(|_| CallError::NotFound)
    }

    /// Ring `identity` into a live call (a service adding a participant) for `ring`; it becomes
    /// a party. The returned receiver says how the ringing ended.
    pub async fn invite(&self, call: Uuid, identity: IdentityId, ring: Duration) -> Result<Invitation, CallError> {
        self.ask(call, |reply| CallInput::Invite { identity, ring, reply }).await
    }

    /// Stop ringing an invited identity (its invitation ends `Cancelled`).
    pub async fn cancel_invite(&self, call: Uuid, identity: IdentityId) -> Result<(), CallError> {
        self.ask(call, |reply| CallInput::CancelInvite { identity, reply }).await
    }

    fn inputs(&self, call: Uuid) -> Result<mpsc::Sender<CallInput>, CallError> {
        self.calls.get(&call).map(|c| c.inputs.clone()).ok_or(CallError::NotFound)
    }

    async fn ask<T>(
        &self,
        call: Uuid,
        make: impl FnOnce(oneshot::Sender<Result<T, AnswerError>>) -> CallInput,
    ) -> Result<T, CallError> {
        let inputs = self.inputs(call)?;
        let (tx, rx) = oneshot::channel();
        inputs.send(make(tx)).await.map_err(|_| CallError::NotFound)?;
        rx.await.map_err(|_| CallError::NotFound)?.map_err(CallError::from)
    }

    /// The call's task: ring, then follow answers, room events and the timeout until it ends.
    async fn run(
        self: Arc<Self>,
        incoming: Arc<IncomingCall>,
        mut attempt: CallAttempt,
        room: Arc<Room>,
        mut inputs: mpsc::Receiver<CallInput>,
        mut events: mpsc::Receiver<Arc<RoomEvent>>,
    ) {
        let call = incoming.call;
        let callees: Vec<IdentityId> = self.parties(call).into_iter().skip(1).collect();
        let reached: HashSet<IdentityId> = callees.into_iter().filter(|callee| self.ring(*callee, &incoming)).collect();
        let mut phase = attempt.phase();
        let effects = attempt.started(|id| reached.contains(&id));
        self.apply(call, &room, effects, &mut phase, &attempt);
        // Invitations whose outcome someone waits for.
        let mut invited: Vec<(IdentityId, oneshot::Sender<CalleeState>)> = Vec::new();
        while !matches!(attempt.phase(), Phase::Ended(_)) {
            let deadline = attempt.next_deadline();
            // An answer is replied to after its effects are applied: the caller hears
            // `Connected` before the callee joins the room.
            let mut reply_to = None;
            let effects = tokio::select! {
                input = inputs.recv() => match input {
                    Some(CallInput::Accept { identity, session, reply }) => {
                        let (effects, result) = take_answer(&mut attempt, identity, session, true);
                        reply_to = Some((reply, result));
                        effects
                    }
                    Some(CallInput::Decline { identity, session, reply }) => {
                        let (effects, result) = take_answer(&mut attempt, identity, session, false);
                        reply_to = Some((reply, result));
                        effects
                    }
                    Some(CallInput::End { reason }) => attempt.end(reason),
                    Some(CallInput::Invite { identity, ring, reply }) => {
                        match attempt.invite(identity, Instant::now(), ring) {
                            Ok(mut effects) => {
                                if let Some(mut handle) = self.calls.get_mut(&call)
                                    && !handle.parties.contains(&identity)
                                {
                                    handle.parties.push(identity);
                                }
                                let rang = self.ring(identity, &incoming);
                                let (tx, rx) = oneshot::channel();
                                invited.push((identity, tx));
                                let _ = reply.send(Ok(rx));
                                if !rang {
                                    effects.extend(attempt.not_reached(identity));
                                }
                                effects
                            }
                            Err(e) => {
                                let _ = reply.send(Err(e));
                                Vec::new()
                            }
                        }
                    }
                    Some(CallInput::CancelInvite { identity, reply }) => {
                        let result = attempt.cancel_invite(identity);
                        let mut effects = result.clone().unwrap_or_default();
                        effects.extend(attempt.check_remaining(room.member_count()));
                        let _ = reply.send(result.map(drop));
                        effects
                    }
                    None => attempt.end(EndReason::HungUp),
                },
                event = events.recv() => match event.as_deref() {
                    Some(RoomEvent::MemberLeft { identity, .. }) => attempt.member_left(*identity, room.member_count()),
                    Some(_) => Vec::new(),
                    None => attempt.end(EndReason::HungUp),
                },
                () = sleep_until(deadline), if deadline.is_some() => {
                    let mut effects = attempt.timed_out(Instant::now());
                    effects.extend(attempt.check_remaining(room.member_count()));
                    effects
                }
            };
            self.apply(call, &room, effects, &mut phase, &attempt);
            if let Some((reply, result)) = reply_to {
                let _ = reply.send(result);
            }
            // Tell who waits for an invitation how it ended, once it no longer rings.
            invited = invited
                .into_iter()
                .filter_map(|(identity, tx)| match attempt.callee(identity) {
                    Some(CalleeState::Ringing) => Some((identity, tx)),
                    other => {
                        let _ = tx.send(other.unwrap_or(CalleeState::Stopped));
                        None
                    }
                })
                .collect();
        }
        self.calls.remove(&call);
    }

    /// A group invitation's task: ring until the first answer, a decline, the timeout or a
    /// cancel; then tell `outcome` and forget the call ID.
    async fn run_invitation(
        self: Arc<Self>,
        incoming: Arc<IncomingCall>,
        identity: IdentityId,
        mut attempt: CallAttempt,
        mut inputs: mpsc::Receiver<CallInput>,
        outcome: oneshot::Sender<CalleeState>,
    ) {
        let call = incoming.call;
        let reached = self.ring(identity, &incoming);
        let effects = attempt.started(|_| reached);
        self.apply_invitation(call, effects);
        while matches!(attempt.phase(), Phase::Connecting | Phase::Ringing) {
            let deadline = attempt.next_deadline();
            let mut reply_to = None;
            let effects = tokio::select! {
                input = inputs.recv() => match input {
                    Some(CallInput::Accept { identity, session, reply }) => {
                        let (effects, result) = take_answer(&mut attempt, identity, session, true);
                        reply_to = Some((reply, result));
                        effects
                    }
                    Some(CallInput::Decline { identity, session, reply }) => {
                        let (effects, result) = take_answer(&mut attempt, identity, session, false);
                        reply_to = Some((reply, result));
                        effects
                    }
                    Some(CallInput::CancelInvite { identity, reply }) => {
                        let result = attempt.cancel_invite(identity);
                        let _ = reply.send(result.clone().map(drop));
                        result.unwrap_or_default()
                    }
                    Some(CallInput::Invite { reply, .. }) => {
                        // One identity per invitation: another is another invitation.
                        let _ = reply.send(Err(AnswerError::AlreadyRinging));
                        Vec::new()
                    }
                    Some(CallInput::End { reason }) => attempt.end(reason),
                    None => attempt.end(EndReason::Cancelled),
                },
                () = sleep_until(deadline), if deadline.is_some() => attempt.timed_out(Instant::now()),
            };
            self.apply_invitation(call, effects);
            if let Some((reply, result)) = reply_to {
                let _ = reply.send(result);
            }
        }
        // Answered: the answering session joins the group call itself (after `accept` returns).
        self.calls.remove(&call);
        let _ = outcome.send(attempt.callee(identity).unwrap_or(CalleeState::Stopped));
    }

    /// What a group invitation's state machine decided: only its devices stop ringing; the
    /// group call's state is not the invitation's, and an invitation is not a call in the metrics.
    fn apply_invitation(&self, call: Uuid, effects: Vec<Effect>) {
        for effect in effects {
            if let Effect::StopRinging { identity, except, reason } = effect {
                self.stop_ringing(call, identity, except, reason);
            }
        }
    }

    fn stop_ringing(&self, call: Uuid, identity: IdentityId, except: Option<SessionId>, reason: EndReason) {
        for device in self.devices.devices_of(identity) {
            if Some(device.session) != except {
                let _ = device.notices.try_send(DeviceNotice::IncomingCallEnded { call, reason });
            }
        }
    }

    /// Ring every device of `callee`; whether any device got the ring.
    fn ring(&self, callee: IdentityId, incoming: &Arc<IncomingCall>) -> bool {
        let mut reached = false;
        for device in self.devices.devices_of(callee) {
            if device.notices.try_send(DeviceNotice::IncomingCall(incoming.clone())).is_ok() {
                reached = true;
            }
        }
        reached
    }

    fn parties(&self, call: Uuid) -> Vec<IdentityId> {
        self.calls.get(&call).map(|c| c.parties.clone()).unwrap_or_default()
    }

    /// Do what the state machine decided; keep the metrics in step with its phase.
    fn apply(&self, call: Uuid, room: &Room, effects: Vec<Effect>, phase: &mut Phase, attempt: &CallAttempt) {
        for effect in effects {
            match effect {
                Effect::StopRinging { identity, except, reason } => self.stop_ringing(call, identity, except, reason),
                Effect::State(state, reason) => room.set_call_state(state, reason),
            }
        }
        let now = attempt.phase();
        if now != *phase {
            if let Some(g) = self.metrics.gauge(*phase) {
                g.dec();
            }
            if let Some(g) = self.metrics.gauge(now) {
                g.inc();
            }
            match now {
                Phase::Connected => {
                    if let Some(t) = attempt.ring_time() {
                        self.metrics.ring.observe(t.as_secs_f64());
                    }
                }
                Phase::Ended(reason) => {
                    self.metrics.ended.with_label_values(&[reason.label()]).inc();
                    tracing::info!(%call, reason = reason.label(), "call ended");
                }
                _ => {}
            }
            *phase = now;
        }
    }
}

/// An accept (or decline) taken by the state machine: its effects, and the answer to reply with
/// once they are applied (the caller hears `Connected` before the callee joins).
fn take_answer(
    attempt: &mut CallAttempt,
    identity: IdentityId,
    session: SessionId,
    accept: bool,
) -> (Vec<Effect>, Result<(), AnswerError>) {
    let result =
        if accept { attempt.accept(identity, session, Instant::now()) } else { attempt.decline(identity, session) };
    (result.clone().unwrap_or_default(), result.map(drop))
}

/// Sleep until `deadline`; forever without one (the `select!` branch is disabled then anyway).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
