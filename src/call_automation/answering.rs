//! Calls that reach the app: answer, reject or redirect an `IncomingCall`, and connect to an
//! existing group call or room.

use super::*;

impl CallAutomation {
    /// Start the app's phones of `[call_automation] incoming_call_subscriptions`. A subscription
    /// naming no user of this server, or a callback URI the allow-list refuses, is an error.
    pub fn listen_for_incoming(
        &self,
        subscriptions: &[crate::config::IncomingCallSubscription],
    ) -> Result<(), AutomationError> {
        let mut checked = Vec::with_capacity(subscriptions.len());
        for s in subscriptions {
            let identity = self.parse_user("incoming_call_subscriptions.identity", &s.identity)?;
            let callback = self
                .shared
                .webhooks
                .validate(&s.callback_uri)
                .map_err(|e| AutomationError::bad("incoming_call_subscriptions.callback_uri", e.to_string()))?;
            checked.push(incoming::Subscription {
                identity,
                raw_id: s.identity.clone(),
                callback,
                schema: s.event_schema,
            });
        }
        for sub in checked {
            incoming::spawn_phone(self.shared.clone(), sub);
        }
        Ok(())
    }

    fn incoming_context(&self, context: &str) -> Result<incoming::IncomingContext, AutomationError> {
        let parsed = incoming::IncomingContext::decode(context).ok_or_else(|| {
            AutomationError::bad("incomingCallContext", "not an incoming call context of this server")
        })?;
        if !self.shared.phones.contains_key(&parsed.callee) {
            return Err(AutomationError::bad("incomingCallContext", "no app takes the calls of this identity"));
        }
        Ok(parsed)
    }

    /// `:answer`: a leg connects as the called identity and accepts the call.
    pub async fn answer(
        &self,
        context: &str,
        callback_uri: &str,
        operation_context: Option<String>,
    ) -> Result<Arc<CallConnection>, AutomationError> {
        let result = async {
            let incoming = self.incoming_context(context)?;
            let callback_uri = self.check_callback(callback_uri)?;
            let client = self.shared.legs.connect(incoming.callee, None).await?;
            let joined = match client.accept_call(&incoming.call.to_string()).await {
                Ok(j) => j,
                Err(e) => {
                    client.close().await;
                    return Err(AutomationError::bad(
                        "incomingCallContext",
                        format!("the call cannot be answered: {e}"),
                    ));
                }
            };
            let raw = incoming.callee.raw(&self.shared.signaling.resource_id);
            let setup = ConnectionSetup {
                kind: ConnectionKind::Call(incoming.call),
                callback_uri,
                operation_context,
                source: incoming.callee,
                source_raw_id: raw,
                source_display_name: None,
                targets: Vec::new(),
                outgoing: false,
            };
            Ok(CallConnection::start(self.shared.clone(), setup, client, joined))
        }
        .await;
        self.shared.metrics.count("answer", &result);
        result
    }

    /// Decline a ringing call from the app's phone.
    async fn decline(&self, incoming: incoming::IncomingContext) -> Result<(), AutomationError> {
        let phone = self.shared.phones.get(&incoming.callee).map(|p| p.clone());
        let phone = phone.ok_or_else(|| AutomationError::bad("incomingCallContext", "no app takes these calls"))?;
        let (reply, replied) = tokio::sync::oneshot::channel();
        if phone.send(incoming::PhoneCommand::Decline { call: incoming.call, reply }).await.is_err() {
            return Err(AutomationError::NotConnected);
        }
        replied.await.map_err(|_| AutomationError::NotConnected)?
    }

    /// `:reject`: the call stops ringing for the app (the caller hears it declined).
    pub async fn reject(&self, context: &str) -> Result<(), AutomationError> {
        let result = async { self.decline(self.incoming_context(context)?).await }.await;
        self.shared.metrics.count("reject", &result);
        result
    }

    /// `:redirect`: ring `target` into the call instead, then decline for the app.
    pub async fn redirect(&self, context: &str, target: &str) -> Result<(), AutomationError> {
        let result = async {
            let incoming = self.incoming_context(context)?;
            let target = self.parse_user("target", target)?;
            let ring = self.shared.settings.ring_timeout;
            // The invitation's outcome is the call's business now; nobody waits for it.
            let _invitation = self.shared.signaling.calls.invite(incoming.call, target, ring).await.map_err(|e| {
                AutomationError::bad("incomingCallContext", format!("the call cannot be redirected: {e}"))
            })?;
            self.decline(incoming).await
        }
        .await;
        self.shared.metrics.count("redirect", &result);
        result
    }

    /// `:connect`: the leg joins a group call, or an ACS room that lists the service identity
    /// as a participant (the room's own admission decides, as for every joiner).
    pub async fn connect(
        &self,
        locator: CallLocator,
        callback_uri: &str,
        operation_context: Option<String>,
    ) -> Result<Arc<CallConnection>, AutomationError> {
        let result = async {
            let callback_uri = self.check_callback(callback_uri)?;
            let (kind, at) = match &locator {
                CallLocator::Group(g) => {
                    let id = Uuid::parse_str(g)
                        .map_err(|_| AutomationError::bad("callLocator.groupCallId", "not a group call ID (a UUID)"))?;
                    (ConnectionKind::Group(id), crate::client::Locator::Group(g.clone()))
                }
                CallLocator::Room(r) => {
                    let id = crate::room_directory::AcsRoomId::parse(r)
                        .ok_or_else(|| AutomationError::bad("callLocator.roomId", "not a room ID"))?;
                    (ConnectionKind::Room(id), crate::client::Locator::Room(r.clone()))
                }
            };
            let legs = &self.shared.legs;
            let source = legs.service_identity().await?;
            let source_raw_id = source.raw(&self.shared.signaling.resource_id);
            let client = legs.connect(source, None).await?;
            let joined = match client.join(None, at, None).await {
                Ok(j) => j,
                Err(e) => {
                    client.close().await;
                    let hint = match locator {
                        CallLocator::Room(_) => format!(
                            " (the room must list the call automation identity {source_raw_id} as a participant)"
                        ),
                        CallLocator::Group(_) => String::new(),
                    };
                    return Err(AutomationError::bad("callLocator", format!("cannot join: {e}{hint}")));
                }
            };
            let setup = ConnectionSetup {
                kind,
                callback_uri,
                operation_context,
                source,
                source_raw_id,
                source_display_name: None,
                targets: Vec::new(),
                outgoing: false,
            };
            Ok(CallConnection::start(self.shared.clone(), setup, client, joined))
        }
        .await;
        self.shared.metrics.count("connect", &result);
        result
    }
}
