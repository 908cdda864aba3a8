//! Calls between people: 1:1 calls (and small group rings) that ring every device of the callee,
//! and `LiveCalls`, which applies role changes and removals to live rooms and the media plane.
//!
//! A call is a room (`RoomKey::Call`) plus a task that owns its `CallAttempt` (the ringing state
//! machine). The caller is in the room from the start; the task rings the callees' devices,
//! takes accepts and declines, watches the room's events (a participant leaving), times the
//! ringing out, and announces the call state to the room, whose members' sessions act on it.

mod live;
pub mod ringing;

pub use live::{ControlError, LiveCalls};
pub use ringing::AnswerError;

use crate::devices::{DeviceNotice, DeviceRegistry, IncomingCall};
use crate::identity::IdentityId;
use crate::media::ids::SessionId;
use crate::metrics::counter_vec;
use crate::rooms::{EndReason, Room, RoomEvent};
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
}

#[derive(Clone)]
struct CallHandle {
    inputs: mpsc::Sender<CallInput>,
    /// The caller and the callees: who may (re)join the call's room.
    parties: Arc<[IdentityId]>,
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
        let parties: Arc<[IdentityId]> = std::iter::once(caller.caller).chain(targets).collect();
        let (inputs, inputs_rx) = mpsc::channel(CALL_INPUTS);
        let (observer, events) = mpsc::channel(CALL_EVENTS);
        room.observe(observer);
        self.calls.insert(caller.call, CallHandle { inputs: inputs.clone(), parties });
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

    pub async fn accept(&self, call: Uuid, identity: IdentityId, session: SessionId) -> Result<(), CallError> {
        self.ask(call, |reply| CallInput::Accept { identity, session, reply }).await
    }

    pub async fn decline(&self, call: Uuid, identity: IdentityId, session: SessionId) -> Result<(), CallError> {
        self.ask(call, |reply| CallInput::Decline { identity, session, reply }).await
    }

    /// End a call for everyone (a party's `hangUp` with `forEveryone`).
    pub async fn end(&self, call: Uuid, reason: EndReason) -> Result<(), CallError> {
        let handle = self.calls.get(&call).map(|c| c.clone()).ok_or(CallError::NotFound)?;
        handle.inputs.send(CallInput::End { reason }).await.map_err(|_| CallError::NotFound)
    }

    async fn ask(
        &self,
        call: Uuid,
        make: impl FnOnce(oneshot::Sender<Result<(), AnswerError>>) -> CallInput,
    ) -> Result<(), CallError> {
        let handle = self.calls.get(&call).map(|c| c.clone()).ok_or(CallError::NotFound)?;
        let (tx, rx) = oneshot::channel();
        handle.inputs.send(make(tx)).await.map_err(|_| CallError::NotFound)?;
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
        let mut reached: HashSet<IdentityId> = HashSet::new();
        let callees: Vec<IdentityId> = self.parties(call).into_iter().skip(1).collect();
        for callee in callees {
            for device in self.devices.devices_of(callee) {
                if device.notices.try_send(DeviceNotice::IncomingCall(incoming.clone())).is_ok() {
                    reached.insert(callee);
                }
            }
        }
        let mut phase = attempt.phase();
        let effects = attempt.started(|id| reached.contains(&id));
        self.apply(call, &room, effects, &mut phase, &attempt);
        while !matches!(attempt.phase(), Phase::Ended(_)) {
            let deadline = attempt.deadline();
            // An answer is replied to after its effects are applied: the caller hears
            // `Connected` before the callee joins the room.
            let mut reply_to = None;
            let effects = tokio::select! {
                input = inputs.recv() => match input {
                    Some(CallInput::Accept { identity, session, reply }) => {
                        let result = attempt.accept(identity, session, Instant::now());
                        let effects = result.clone().unwrap_or_default();
                        reply_to = Some((reply, result.map(drop)));
                        effects
                    }
                    Some(CallInput::Decline { identity, session, reply }) => {
                        let result = attempt.decline(identity, session);
                        let effects = result.clone().unwrap_or_default();
                        reply_to = Some((reply, result.map(drop)));
                        effects
                    }
                    Some(CallInput::End { reason }) => attempt.end(reason),
                    None => attempt.end(EndReason::HungUp),
                },
                event = events.recv() => match event.as_deref() {
                    Some(RoomEvent::MemberLeft { identity, .. }) => attempt.member_left(*identity, room.member_count()),
                    Some(_) => Vec::new(),
                    None => attempt.end(EndReason::HungUp),
                },
                () = tokio::time::sleep_until(deadline.into()), if attempt.phase() != Phase::Connected => {
                    attempt.timed_out(Instant::now())
                }
            };
            self.apply(call, &room, effects, &mut phase, &attempt);
            if let Some((reply, result)) = reply_to {
                let _ = reply.send(result);
            }
        }
        self.calls.remove(&call);
    }

    fn parties(&self, call: Uuid) -> Vec<IdentityId> {
        self.calls.get(&call).map(|c| c.parties.to_vec()).unwrap_or_default()
    }

    /// Do what the state machine decided; keep the metrics in step with its phase.
    fn apply(&self, call: Uuid, room: &Room, effects: Vec<Effect>, phase: &mut Phase, attempt: &CallAttempt) {
        for effect in effects {
            match effect {
                Effect::StopRinging { identity, except, reason } => {
                    for device in self.devices.devices_of(identity) {
                        if Some(device.session) != except {
                            let _ = device.notices.try_send(DeviceNotice::IncomingCallEnded { call, reason });
                        }
                    }
                }
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
