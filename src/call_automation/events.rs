//! The `data` of the events a call connection sends its app, shaped as ACS Call Automation sends
//! them (the event models of the ACS SDKs: `CallConnected`, `ParticipantsUpdated`, ...). Pure
//! functions from what happened to JSON; `CallConnection::emit` sends them.

use serde_json::{Value, json};

/// The API version the payloads follow (`data.version`).
pub const EVENT_VERSION: &str = "2024-09-15";

/// Who a call connection is, as every event names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventBase {
    pub call_connection_id: String,
    pub server_call_id: String,
    pub correlation_id: String,
}

/// ACS `ResultInformation`: a SIP-like code, a sub-code and a sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultInformation {
    pub code: u16,
    pub sub_code: u32,
    pub message: &'static str,
}

impl ResultInformation {
    pub const fn new(code: u16, sub_code: u32, message: &'static str) -> Self {
        Self { code, sub_code, message }
    }

    fn json(self) -> Value {
        json!({ "code": self.code, "subCode": self.sub_code, "message": self.message })
    }
}

/// A participant as the events and `GET participants` show it (ACS `CallParticipant`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantState {
    pub raw_id: String,
    pub is_muted: bool,
}

/// ACS `CommunicationIdentifierModel` of a communication user.
pub fn identifier(raw_id: &str) -> Value {
    json!({ "kind": "communicationUser", "rawId": raw_id, "communicationUser": { "id": raw_id } })
}

/// ACS `CallParticipant`.
pub fn participant(p: &ParticipantState) -> Value {
    json!({ "identifier": identifier(&p.raw_id), "isMuted": p.is_muted, "isOnHold": false })
}

/// The fields every event of a connection carries, then the event's own.
fn event(
    name: &str,
    base: &EventBase,
    operation_context: Option<&str>,
    result: Option<ResultInformation>,
    extra: Value,
) -> Value {
    let mut data = json!({
        "version": EVENT_VERSION,
        "publicEventType": format!("Microsoft.Communication.{name}"),
        "callConnectionId": base.call_connection_id,
        "serverCallId": base.server_call_id,
        "correlationId": base.correlation_id,
    });
    let map = data.as_object_mut().expect("a json! object literal is an object");
    if let Some(context) = operation_context {
        map.insert("operationContext".into(), context.into());
    }
    if let Some(result) = result {
        map.insert("resultInformation".into(), result.json());
    }
    if let Value::Object(extra) = extra {
        map.extend(extra);
    }
    data
}

/// `CallConnected`: the call is established (a target answered; connected to a call).
pub fn call_connected(base: &EventBase, operation_context: Option<&str>) -> Value {
    event("CallConnected", base, operation_context, None, json!({}))
}

/// `CallDisconnected`: the connection ended (hung up, terminated, the call ended).
pub fn call_disconnected(base: &EventBase, operation_context: Option<&str>, result: ResultInformation) -> Value {
    event("CallDisconnected", base, operation_context, Some(result), json!({}))
}

/// `CreateCallFailed`: no target answered (declined, no answer, unreachable).
pub fn create_call_failed(base: &EventBase, operation_context: Option<&str>, result: ResultInformation) -> Value {
    event("CreateCallFailed", base, operation_context, Some(result), json!({}))
}

/// `ParticipantsUpdated`: who is in the call now; `sequenceNumber` grows with every update.
pub fn participants_updated(base: &EventBase, sequence: u64, participants: &[ParticipantState]) -> Value {
    let list: Vec<Value> = participants.iter().map(participant).collect();
    event("ParticipantsUpdated", base, None, None, json!({ "sequenceNumber": sequence, "participants": list }))
}

/// `AddParticipantSucceeded` / `AddParticipantFailed`.
pub fn add_participant(
    base: &EventBase,
    succeeded: bool,
    operation_context: Option<&str>,
    raw_id: &str,
    invitation_id: &str,
    result: ResultInformation,
) -> Value {
    let name = if succeeded { "AddParticipantSucceeded" } else { "AddParticipantFailed" };
    let extra = json!({ "participant": identifier(raw_id), "invitationId": invitation_id });
    event(name, base, operation_context, Some(result), extra)
}

/// `RemoveParticipantSucceeded`.
pub fn remove_participant_succeeded(base: &EventBase, operation_context: Option<&str>, raw_id: &str) -> Value {
    let result = ResultInformation::new(200, 0, "The participant was removed");
    event(
        "RemoveParticipantSucceeded",
        base,
        operation_context,
        Some(result),
        json!({ "participant": identifier(raw_id) }),
    )
}

/// `CancelAddParticipantSucceeded`.
pub fn cancel_add_participant_succeeded(
    base: &EventBase,
    operation_context: Option<&str>,
    invitation_id: &str,
) -> Value {
    let result = ResultInformation::new(200, 0, "The invitation was cancelled");
    event(
        "CancelAddParticipantSucceeded",
        base,
        operation_context,
        Some(result),
        json!({ "invitationId": invitation_id }),
    )
}

/// The event of a media operation (`PlayStarted`, `PlayCompleted`, `PlayFailed`,
/// `PlayCanceled`, ...): the connection, the operation's context and its result.
pub fn operation(name: &str, base: &EventBase, operation_context: Option<&str>, result: ResultInformation) -> Value {
    event(name, base, operation_context, Some(result), json!({}))
}

/// `ContinuousDtmfRecognitionToneReceived`: one tone, numbered from 1 per participant.
pub fn tone_received(base: &EventBase, operation_context: Option<&str>, tone: &str, sequence_id: u64) -> Value {
    let result = ResultInformation::new(200, 0, "Action completed successfully.");
    let extra = json!({ "tone": tone, "sequenceId": sequence_id });
    event("ContinuousDtmfRecognitionToneReceived", base, operation_context, Some(result), extra)
}

/// `RecognizeCompleted` of a DTMF recognition: `recognitionType: dtmf`, `dtmfResult.tones`.
pub fn recognize_completed(
    base: &EventBase,
    operation_context: Option<&str>,
    tones: &[&str],
    result: ResultInformation,
) -> Value {
    let extra = json!({ "recognitionType": "dtmf", "dtmfResult": { "tones": tones } });
    event("RecognizeCompleted", base, operation_context, Some(result), extra)
}

/// `IncomingCall` (the Event Grid event an app subscribed to an identity receives).
pub fn incoming_call(
    to_raw_id: &str,
    from_raw_id: &str,
    caller_display_name: Option<&str>,
    incoming_call_context: &str,
    server_call_id: &str,
    correlation_id: &str,
) -> Value {
    json!({
        "to": identifier(to_raw_id),
        "from": identifier(from_raw_id),
        "callerDisplayName": caller_display_name.unwrap_or_default(),
        "incomingCallContext": incoming_call_context,
        "serverCallId": server_call_id,
        "correlationId": correlation_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> EventBase {
        EventBase { call_connection_id: "c1".into(), server_call_id: "s1".into(), correlation_id: "k1".into() }
    }

    #[test]
    fn every_event_names_its_connection_and_carries_its_context() {
        let e = call_connected(&base(), Some("ctx"));
        assert_eq!(e["callConnectionId"], "c1");
        assert_eq!(e["serverCallId"], "s1");
        assert_eq!(e["correlationId"], "k1");
        assert_eq!(e["operationContext"], "ctx");
        assert_eq!(e["publicEventType"], "Microsoft.Communication.CallConnected");
        assert!(call_connected(&base(), None).get("operationContext").is_none());
    }

    #[test]
    fn participants_updated_lists_identifiers_with_their_mute_state() {
        let people = [ParticipantState { raw_id: "8:acs:r_1".into(), is_muted: true }];
        let e = participants_updated(&base(), 7, &people);
        assert_eq!(e["sequenceNumber"], 7);
        let p = &e["participants"][0];
        assert_eq!(p["identifier"]["rawId"], "8:acs:r_1");
        assert_eq!(p["identifier"]["communicationUser"]["id"], "8:acs:r_1");
        assert_eq!(p["identifier"]["kind"], "communicationUser");
        assert_eq!(p["isMuted"], true);
        assert_eq!(p["isOnHold"], false);
    }

    #[test]
    fn add_participant_results_carry_the_participant_and_result_information() {
        let e = add_participant(&base(), false, Some("op"), "8:acs:r_2", "inv", ResultInformation::new(408, 0, "x"));
        assert_eq!(e["publicEventType"], "Microsoft.Communication.AddParticipantFailed");
        assert_eq!(e["participant"]["rawId"], "8:acs:r_2");
        assert_eq!(e["resultInformation"]["code"], 408);
        assert_eq!(e["resultInformation"]["subCode"], 0);
        assert_eq!(e["invitationId"], "inv");
    }
}
