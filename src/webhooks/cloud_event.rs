//! The body of a delivery: a JSON array holding one CloudEvent 1.0 (structured mode), shaped like
//! the callbacks of ACS Call Automation, which the official SDKs parse
//! (`CallAutomationEventParser.parse` takes the first element of the array and maps `type`'s
//! last dotted part to an event class; `azure.core.messaging.CloudEvent.from_dict` reads the
//! envelope).

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::macros::format_description;

/// The prefix of every event `type`.
pub const EVENT_TYPE_PREFIX: &str = "Microsoft.Communication.";

/// The API version ACS writes into each event's `data.version`.
pub const EVENT_DATA_VERSION: &str = "2024-09-15";

/// One call-automation event, as the call API hands it to `Webhooks::publish`.
#[derive(Debug, Clone, PartialEq)]
pub struct AcsEvent {
    /// The ACS event name without prefix, e.g. "CallConnected"; the CloudEvent `type` is
    /// "Microsoft.Communication.CallConnected".
    pub name: &'static str,
    /// CloudEvent `subject` (and `source`), e.g. "calling/callConnections/{callConnectionId}".
    pub subject: String,
    /// The event's `data` object as ACS sends it (callConnectionId, serverCallId, correlationId,
    /// operationContext, resultInformation, ...). The caller builds it; `version` and
    /// `publicEventType` are added when it lacks them, as ACS always sends both.
    pub data: Value,
}

/// The CloudEvent `type` of an event name.
pub fn event_type(name: &str) -> String {
    format!("{EVENT_TYPE_PREFIX}{name}")
}

/// The CloudEvent for `event` with the given `id` and `time`: `id`, `source`, `type`, `data`,
/// `time`, `specversion` 1.0, `datacontenttype` application/json, `subject`.
pub fn cloud_event(event: &AcsEvent, id: &str, time: OffsetDateTime) -> Value {
    let ty = event_type(event.name);
    let data = match &event.data {
        Value::Object(fields) => {
            let mut fields = fields.clone();
            fields.entry("version").or_insert_with(|| Value::from(EVENT_DATA_VERSION));
            fields.entry("publicEventType").or_insert_with(|| Value::from(ty.as_str()));
            Value::Object(fields)
        }
        other => other.clone(),
    };
    let mut envelope = Map::new();
    envelope.insert("id".into(), Value::from(id));
    envelope.insert("source".into(), Value::from(event.subject.as_str()));
    envelope.insert("type".into(), Value::from(ty));
    envelope.insert("data".into(), data);
    envelope.insert("time".into(), Value::from(event_time(time)));
    envelope.insert("specversion".into(), Value::from("1.0"));
    envelope.insert("datacontenttype".into(), Value::from("application/json"));
    envelope.insert("subject".into(), Value::from(event.subject.as_str()));
    Value::Object(envelope)
}

/// The POST body: a JSON array with the one CloudEvent, as ACS posts it.
pub fn delivery_body(event: &AcsEvent, id: &str, time: OffsetDateTime) -> Vec<u8> {
    serde_json::to_vec(&[cloud_event(event, id, time)]).expect("a serde_json::Value always serializes")
}

/// How an event is framed on the wire. Call Automation callbacks are CloudEvents; an
/// `IncomingCall` comes through an Event Grid subscription in ACS, whose default is the Event Grid
/// schema (what the ACS quickstarts parse with `EventGridEvent.from_dict`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub enum EventSchema {
    #[default]
    CloudEvents,
    EventGrid,
}

/// The Event Grid event for `event`: `id`, `topic`, `subject`, `data`, `eventType`,
/// `eventTime`, `dataVersion` 1.0 and `metadataVersion` 1. `topic` names the resource the event
/// is about (ACS: the Communication Services resource).
pub fn event_grid_event(event: &AcsEvent, id: &str, time: OffsetDateTime, topic: &str) -> Value {
    let mut envelope = Map::new();
    envelope.insert("id".into(), Value::from(id));
    envelope.insert("topic".into(), Value::from(topic));
    envelope.insert("subject".into(), Value::from(event.subject.as_str()));
    envelope.insert("data".into(), event.data.clone());
    envelope.insert("eventType".into(), Value::from(event_type(event.name)));
    envelope.insert("eventTime".into(), Value::from(event_time(time)));
    envelope.insert("dataVersion".into(), Value::from("1.0"));
    envelope.insert("metadataVersion".into(), Value::from("1"));
    Value::Object(envelope)
}

/// The POST body in `schema`: a JSON array with the one event.
pub fn delivery_body_in(schema: EventSchema, event: &AcsEvent, id: &str, time: OffsetDateTime, topic: &str) -> Vec<u8> {
    let framed = match schema {
        EventSchema::CloudEvents => cloud_event(event, id, time),
        EventSchema::EventGrid => event_grid_event(event, id, time, topic),
    };
    serde_json::to_vec(&[framed]).expect("a serde_json::Value always serializes")
}

/// RFC 3339 in UTC with microseconds (`2024-05-01T12:00:00.123456Z`): older azure-core parsers
/// use `strptime(..., "%f")`, which takes at most six fractional digits.
pub fn event_time(time: OffsetDateTime) -> String {
    let utc = time.to_offset(time::UtcOffset::UTC);
    utc.format(format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"))
        .expect("a UTC time inside the year range formats with a fixed description")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn connected() -> AcsEvent {
        AcsEvent {
            name: "CallConnected",
            subject: "calling/callConnections/421f3700-f4e1-4a4d-a5ef-0c5ab2c3d6f1".into(),
            data: json!({
                "callConnectionId": "421f3700-f4e1-4a4d-a5ef-0c5ab2c3d6f1",
                "serverCallId": "aHR0cHM6Ly9leGFtcGxl",
                "correlationId": "9f7d1d46-2b0e-4b6c-a0b0-6e7f8a9b0c1d",
                "operationContext": "ctx",
                "resultInformation": {"code": 200, "subCode": 0, "message": "ok"},
            }),
        }
    }

    #[test]
    fn event_grid_body_has_the_event_grid_fields_and_the_same_data() {
        let time = OffsetDateTime::from_unix_timestamp_nanos(1_714_564_800_123_456_789).expect("time");
        let body = delivery_body_in(EventSchema::EventGrid, &connected(), "e-2", time, "/communicationServices/r");
        let v: Value = serde_json::from_slice(&body).expect("json");
        let e = &v.as_array().expect("an array")[0];
        let mut keys: Vec<&str> = e.as_object().expect("object").keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["data", "dataVersion", "eventTime", "eventType", "id", "metadataVersion", "subject", "topic"]
        );
        assert_eq!(e["eventType"], "Microsoft.Communication.CallConnected");
        assert_eq!(e["eventTime"], "2024-05-01T12:00:00.123456Z");
        assert_eq!(e["data"], connected().data);
        assert_eq!(serde_json::from_str::<EventSchema>("\"EventGrid\"").ok(), Some(EventSchema::EventGrid));
        assert!(serde_json::from_str::<EventSchema>("\"eventgrid\"").is_err(), "names are exact");
    }

    #[test]
    fn body_is_an_array_of_one_cloud_event_with_the_acs_fields() {
        let time = OffsetDateTime::from_unix_timestamp_nanos(1_714_564_800_123_456_789).expect("time");
        let body = delivery_body(&connected(), "e-1", time);
        let v: Value = serde_json::from_slice(&body).expect("json");
        let events = v.as_array().expect("an array");
        assert_eq!(events.len(), 1);
        let e = &events[0];
        let mut keys: Vec<&str> = e.as_object().expect("object").keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["data", "datacontenttype", "id", "source", "specversion", "subject", "time", "type"]);
        assert_eq!(e["id"], "e-1");
        assert_eq!(e["type"], "Microsoft.Communication.CallConnected");
        assert_eq!(e["source"], "calling/callConnections/421f3700-f4e1-4a4d-a5ef-0c5ab2c3d6f1");
        assert_eq!(e["subject"], e["source"]);
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["datacontenttype"], "application/json");
        assert_eq!(e["time"], "2024-05-01T12:00:00.123456Z");
        assert_eq!(e["data"]["callConnectionId"], "421f3700-f4e1-4a4d-a5ef-0c5ab2c3d6f1");
        assert_eq!(e["data"]["resultInformation"]["code"], 200);
        assert_eq!(e["data"]["version"], EVENT_DATA_VERSION);
        assert_eq!(e["data"]["publicEventType"], "Microsoft.Communication.CallConnected");
    }

    #[test]
    fn caller_data_fields_win_and_non_objects_pass_through() {
        let mut ev = connected();
        ev.data["version"] = json!("2023-10-15");
        let e = cloud_event(&ev, "x", OffsetDateTime::UNIX_EPOCH);
        assert_eq!(e["data"]["version"], "2023-10-15");
        assert_eq!(e["time"], "1970-01-01T00:00:00.000000Z");
        ev.data = Value::Null;
        assert_eq!(cloud_event(&ev, "x", OffsetDateTime::UNIX_EPOCH)["data"], Value::Null);
    }

    #[test]
    fn time_is_utc_whatever_the_offset() {
        let t = OffsetDateTime::UNIX_EPOCH.to_offset(time::UtcOffset::from_hms(2, 0, 0).expect("offset"));
        assert_eq!(event_time(t), "1970-01-01T00:00:00.000000Z");
    }
}
