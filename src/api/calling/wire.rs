//! The wire shapes of `/calling/...`, named after the ACS models of the official SDKs (the
//! fields this server reads; others are accepted and ignored).

use crate::api::error::AcsError;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
/// ACS `CommunicationUserIdentifierModel`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CommunicationUser {
    pub id: String,
}

/// ACS `CommunicationIdentifierModel`: only communication users are supported.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommunicationIdentifier {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub raw_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub communication_user: Option<CommunicationUser>,
    /// Phone numbers are not supported by this server (refused with 400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, nullable = false)]
    pub phone_number: Option<serde_json::Value>,
}

impl CommunicationIdentifier {
    /// The raw ID of the communication user this names.
    pub(super) fn user(&self, field: &str) -> Result<String, AcsError> {
        if self.phone_number.is_some() {
            return Err(AcsError::bad_argument("phone numbers are not supported", field));
        }
        match (&self.communication_user, &self.raw_id) {
            (Some(user), _) => Ok(user.id.clone()),
            (None, Some(raw)) => Ok(raw.clone()),
            (None, None) => Err(AcsError::bad_argument("name a communication user (communicationUser.id)", field)),
        }
    }

    pub(super) fn of(raw_id: &str) -> Self {
        Self {
            kind: Some("communicationUser".into()),
            raw_id: Some(raw_id.into()),
            communication_user: Some(CommunicationUser { id: raw_id.into() }),
            phone_number: None,
        }
    }
}

/// ACS `CreateCallRequest` (the fields this server reads; others are accepted and ignored).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateCallRequest {
    #[serde(default)]
    pub targets: Vec<CommunicationIdentifier>,
    /// Required.
    #[serde(default)]
    #[schema(required = true)]
    pub callback_uri: Option<String>,
    #[serde(default)]
    pub operation_context: Option<String>,
    #[serde(default)]
    pub source_display_name: Option<String>,
    /// Ignored: calls come from the server's call automation identity.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub source: Option<serde_json::Value>,
    /// Options of features this server lacks: refused when set.
    #[serde(flatten)]
    pub missing: MissingFeatures,
}

/// ACS `CallConnectionProperties`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallConnectionProperties {
    pub call_connection_id: String,
    pub server_call_id: String,
    pub targets: Vec<CommunicationIdentifier>,
    /// `connecting`, `connected`, `disconnecting`, `disconnected`.
    pub call_connection_state: &'static str,
    pub callback_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub source_display_name: Option<String>,
    pub source: CommunicationIdentifier,
    pub correlation_id: String,
}

/// ACS `CallParticipant`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallParticipant {
    pub identifier: CommunicationIdentifier,
    pub is_muted: bool,
    pub is_on_hold: bool,
}

/// ACS `GetParticipantsResponse` (one page: every participant).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GetParticipantsResponse {
    pub value: Vec<CallParticipant>,
}

/// ACS `AddParticipantRequest`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddParticipantRequest {
    pub participant_to_add: CommunicationIdentifier,
    /// 0 to 180; absent or 0: the server's ring timeout.
    #[serde(default)]
    pub invitation_timeout_in_seconds: Option<i64>,
    #[serde(default)]
    pub operation_context: Option<String>,
    #[serde(default)]
    pub source_display_name: Option<String>,
}

/// ACS `AddParticipantResponse`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddParticipantResponse {
    pub participant: CallParticipant,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub operation_context: Option<String>,
    pub invitation_id: String,
}

/// ACS `RemoveParticipantRequest`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoveParticipantRequest {
    pub participant_to_remove: CommunicationIdentifier,
    #[serde(default)]
    pub operation_context: Option<String>,
}

/// ACS `MuteParticipantsRequest`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MuteParticipantsRequest {
    pub target_participants: Vec<CommunicationIdentifier>,
    #[serde(default)]
    pub operation_context: Option<String>,
}

/// ACS `CancelAddParticipantRequest`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelAddParticipantRequest {
    pub invitation_id: String,
    #[serde(default)]
    pub operation_context: Option<String>,
}

/// ACS `RemoveParticipantResponse`, `MuteParticipantsResult`: the operation context.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperationResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub operation_context: Option<String>,
}

/// ACS `CancelAddParticipantResponse`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelAddParticipantResponse {
    pub invitation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub operation_context: Option<String>,
}

/// ACS `FileSource`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileSource {
    /// A file name or relative path inside `[call_automation] media_dir`, or an http(s) URL on a
    /// host `[call_automation] media_hosts` allows. WAV (PCM) or Ogg Opus.
    pub uri: String,
}

/// ACS `PlaySource`: only `kind: file` is supported.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlaySource {
    /// `file` (text and SSML sources are refused with 400).
    pub kind: String,
    #[serde(default)]
    pub file: Option<FileSource>,
    /// Accepted and ignored (sources are not cached).
    #[serde(default)]
    pub play_source_cache_id: Option<String>,
}

impl PlaySource {
    pub(super) fn uri(&self, field: &str) -> Result<String, AcsError> {
        match (self.kind.as_str(), &self.file) {
            ("file", Some(f)) => Ok(f.uri.clone()),
            ("file", None) => Err(AcsError::bad_argument("a file play source needs file.uri", field)),
            (other, _) => Err(AcsError::new(
                StatusCode::BAD_REQUEST,
                "NotSupported",
                format!("play sources of kind {other} are not supported (only file)"),
            )),
        }
    }
}

/// ACS `PlayOptions`.
#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct PlayOptions {
    #[serde(default, rename = "loop")]
    pub looped: bool,
}

/// ACS `PlayRequest`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlayRequest {
    pub play_sources: Vec<PlaySource>,
    /// Empty or absent: everyone. Otherwise only these participants (each must be in the call)
    /// hear it: the leg plays it on a track published to them alone.
    #[serde(default)]
    pub play_to: Vec<CommunicationIdentifier>,
    #[serde(default)]
    pub interrupt_call_media_operation: bool,
    #[serde(default)]
    pub play_options: Option<PlayOptions>,
    #[serde(default)]
    pub operation_context: Option<String>,
    /// Refused when set: events go to the connection's callback URI.
    #[serde(default)]
    pub operation_callback_uri: Option<String>,
}

/// ACS `ContinuousDtmfRecognitionRequest`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContinuousDtmfRecognitionRequest {
    pub target_participant: CommunicationIdentifier,
    #[serde(default)]
    pub operation_context: Option<String>,
    #[serde(default)]
    pub operation_callback_uri: Option<String>,
}

/// ACS `DtmfOptions`.
#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct DtmfOptions {
    /// 1 to 60 s (default 2).
    #[serde(default)]
    pub inter_tone_timeout_in_seconds: Option<i64>,
    /// 1 to 60 (default 1).
    #[serde(default)]
    pub max_tones_to_collect: Option<i64>,
    /// Tone names (`zero`..`nine`, `pound`, `asterisk`, `a`..`d`, `flash`).
    #[serde(default)]
    pub stop_tones: Vec<String>,
}

/// ACS `RecognizeOptions` (DTMF).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecognizeOptionsModel {
    pub target_participant: CommunicationIdentifier,
    /// 0 to 300 s (default 5; 0: wait for the first tone without limit).
    #[serde(default)]
    pub initial_silence_timeout_in_seconds: Option<i64>,
    /// A tone during the prompt stops it and is the recognition's first (default false: the
    /// recognition starts when the prompt ends).
    #[serde(default)]
    pub interrupt_prompt: Option<bool>,
    #[serde(default)]
    pub dtmf_options: Option<DtmfOptions>,
}

/// ACS `RecognizeRequest`: only `recognizeInputType: dtmf`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecognizeRequest {
    pub recognize_input_type: String,
    #[serde(default)]
    pub play_prompt: Option<PlaySource>,
    #[serde(default)]
    pub play_prompts: Vec<PlaySource>,
    #[serde(default)]
    pub interrupt_call_media_operation: bool,
    pub recognize_options: RecognizeOptionsModel,
    #[serde(default)]
    pub operation_context: Option<String>,
    #[serde(default)]
    pub operation_callback_uri: Option<String>,
}

/// ACS `SendDtmfTonesRequest`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendDtmfTonesRequest {
    /// 1 to 18 tone names.
    pub tones: Vec<String>,
    pub target_participant: CommunicationIdentifier,
    #[serde(default)]
    pub operation_context: Option<String>,
    #[serde(default)]
    pub operation_callback_uri: Option<String>,
}

/// ACS `AnswerCallRequest`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnswerCallRequest {
    /// From the `IncomingCall` event.
    pub incoming_call_context: String,
    pub callback_uri: String,
    #[serde(default)]
    pub operation_context: Option<String>,
    /// Options of features this server lacks: refused when set.
    #[serde(flatten)]
    pub missing: MissingFeatures,
}

/// ACS `RejectCallRequest`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RejectCallRequest {
    pub incoming_call_context: String,
    /// `none`, `busy` or `forbidden` (the caller is told `Declined` whichever).
    #[serde(default)]
    pub call_reject_reason: Option<String>,
}

/// ACS `RedirectCallRequest`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedirectCallRequest {
    pub incoming_call_context: String,
    pub target: CommunicationIdentifier,
}

/// ACS `CallLocator`: `groupCallLocator` (groupCallId) or `roomCallLocator` (roomId).
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallLocatorModel {
    pub kind: String,
    #[serde(default)]
    pub group_call_id: Option<String>,
    #[serde(default)]
    pub room_id: Option<String>,
    #[serde(default)]
    pub server_call_id: Option<String>,
}

/// ACS `ConnectRequest`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectRequest {
    pub call_locator: CallLocatorModel,
    pub callback_uri: String,
    #[serde(default)]
    pub operation_context: Option<String>,
    /// Options of features this server lacks: refused when set.
    #[serde(flatten)]
    pub missing: MissingFeatures,
}

/// The request options of ACS features this server does not implement (create, answer and
/// connect carry them). They are refused rather than ignored: an app that asks for
/// transcription must learn it gets none.
#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct MissingFeatures {
    /// Refused (400 NotSupported) when set: media streaming is not implemented.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub media_streaming_options: Option<serde_json::Value>,
    /// Refused (400 NotSupported) when set: transcription is not implemented.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub transcription_options: Option<serde_json::Value>,
    /// Refused (400 NotSupported) when set: Cognitive Services are not used.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub call_intelligence_options: Option<serde_json::Value>,
}

impl MissingFeatures {
    pub(super) fn refuse(&self) -> Result<(), AcsError> {
        let named = [
            ("mediaStreamingOptions", &self.media_streaming_options),
            ("transcriptionOptions", &self.transcription_options),
            ("callIntelligenceOptions", &self.call_intelligence_options),
        ];
        match named.into_iter().find(|(_, v)| v.as_ref().is_some_and(|v| !v.is_null())) {
            Some((name, _)) => Err(AcsError::new(
                StatusCode::BAD_REQUEST,
                "NotSupported",
                format!("{name} is not supported by this server"),
            )
            .with_target(name)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_of_missing_features_are_refused_not_ignored() {
        let req: ConnectRequest = serde_json::from_value(serde_json::json!({
            "callLocator": {"kind": "groupCallLocator", "groupCallId": "g"},
            "callbackUri": "http://127.0.0.1/cb",
            "mediaStreamingOptions": null,
        }))
        .expect("a valid request");
        assert!(req.missing.refuse().is_ok(), "null is absent");
        let req: CreateCallRequest = serde_json::from_value(serde_json::json!({
            "targets": [], "callbackUri": "http://127.0.0.1/cb",
            "transcriptionOptions": {"transportUrl": "wss://x", "locale": "en-US"},
        }))
        .expect("a valid request");
        let e = req.missing.refuse().expect_err("transcription is not implemented");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.code, "NotSupported");
        assert_eq!(e.target.as_deref(), Some("transcriptionOptions"));
    }
}
