//! Incoming calls to an app (`[call_automation] incoming_call_subscriptions`): for each identity
//! an app owns, the server keeps one leg registered as a device of that identity — the app's
//! phone. A call to the identity rings it like any device (through the `CallRegistry` and
//! `DeviceRegistry`); the ring becomes an `IncomingCall` event at the app's callback URI, whose
//! `incomingCallContext` names the call and the identity. `answer` connects a new leg as that
//! identity and accepts (first accept wins, as for any device); `reject` declines from the
//! app's phone; `redirect` rings the new target into the call, then declines.

use super::events;
use super::{AutomationError, Shared};
use crate::client::{Client, ClientEvent};
use crate::identity::IdentityId;
use crate::signaling::messages::ServerMessage;
use crate::webhooks::{AcsEvent, CallbackUri, EventSchema};
use base64::Engine as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// A subscription, checked.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub identity: IdentityId,
    pub raw_id: String,
    pub callback: CallbackUri,
    pub schema: EventSchema,
}

/// What the app's phone is asked to do.
pub(crate) enum PhoneCommand {
    Decline { call: Uuid, reply: oneshot::Sender<Result<(), AutomationError>> },
}

/// The call and callee an `incomingCallContext` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncomingContext {
    pub call: Uuid,
    pub callee: IdentityId,
}

impl IncomingContext {
    /// Opaque to the app: base64url of `call.callee-uuid`. Requests that carry it are
    /// HMAC-signed, so it needs no signature of its own.
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}.{}", self.call, self.callee.0))
    }

    pub fn decode(context: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(context).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (call, callee) = text.split_once('.')?;
        Some(Self { call: Uuid::parse_str(call).ok()?, callee: IdentityId(Uuid::parse_str(callee).ok()?) })
    }
}

/// Keep the app's phone for `sub` connected for as long as the server runs.
pub(super) fn spawn_phone(shared: Arc<Shared>, sub: Subscription) {
    let (commands, mut inbox) = mpsc::channel(16);
    shared.phones.insert(sub.identity, commands);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            match shared.legs.connect(sub.identity, None).await {
                Ok(client) => {
                    backoff = Duration::from_millis(200);
                    tracing::info!(identity = %sub.raw_id, "incoming calls of this identity go to its app");
                    if !ring_app(&shared, &sub, client, &mut inbox).await {
                        return;
                    }
                }
                Err(e) => tracing::warn!(identity = %sub.raw_id, error = %e, "the app's phone cannot connect"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    });
}

/// Turn rings into `IncomingCall` events until the phone's connection ends (true: reconnect) or
/// the server drops the subscription (false).
async fn ring_app(
    shared: &Shared,
    sub: &Subscription,
    mut client: Client,
    inbox: &mut mpsc::Receiver<PhoneCommand>,
) -> bool {
    loop {
        tokio::select! {
            event = client.next_event() => match event {
                Some(ClientEvent::Signal(ServerMessage::IncomingCall { call_id, caller, group_id })) => {
                    let Ok(call) = Uuid::parse_str(&call_id) else { continue };
                    let context = IncomingContext { call, callee: sub.identity };
                    // An invitation into a group call is about the group call.
                    let room = match group_id.as_deref().map(Uuid::parse_str) {
                        Some(Ok(group)) => crate::rooms::RoomKey::Group(group),
                        _ => crate::rooms::RoomKey::Call(call),
                    };
                    let server_call_id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(room.to_string());
                    let data = events::incoming_call(
                        &sub.raw_id,
                        &caller.identity,
                        caller.display_name.as_deref(),
                        &context.encode(),
                        &server_call_id,
                        &Uuid::new_v4().to_string(),
                    );
                    shared.metrics.events.with_label_values(&["IncomingCall"]).inc();
                    let subject = format!("/caller/{}/recipient/{}", caller.identity, sub.raw_id);
                    let event = AcsEvent { name: "IncomingCall", subject, data };
                    match sub.schema {
                        EventSchema::CloudEvents => shared.webhooks.publish(&sub.callback, &call_id, event),
                        EventSchema::EventGrid => {
                            let topic = format!("/communicationServices/{}", shared.signaling.resource_id);
                            shared.webhooks.publish_event_grid(&sub.callback, &call_id, event, &topic);
                        }
                    }
                }
                Some(ClientEvent::Closed { .. }) | None => {
                    client.close().await;
                    return true;
                }
                Some(_) => {}
            },
            command = inbox.recv() => match command {
                Some(PhoneCommand::Decline { call, reply }) => {
                    let result = client.reject_call(&call.to_string()).await.map_err(|e| {
                        AutomationError::bad("incomingCallContext", format!("the call no longer rings: {e}"))
                    });
                    let _ = reply.send(result);
                }
                None => {
                    client.close().await;
                    return false;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_round_trip_and_garbage_is_none() {
        let c = IncomingContext { call: Uuid::new_v4(), callee: IdentityId(Uuid::new_v4()) };
        assert_eq!(IncomingContext::decode(&c.encode()), Some(c));
        for bad in ["", "x", "bm9wZQ", &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("a.b")] {
            assert_eq!(IncomingContext::decode(bad), None, "{bad}");
        }
    }
}
